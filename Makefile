# pg_engage: the extension library (pg_engage) and the output plugin
# (engage_decoder, built by plugin/Makefile), both with PGXS.

EXTENSION  = pg_engage
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" pg_engage.control)

MODULE_big = pg_engage
OBJS       = $(patsubst %.c,%.o,$(wildcard extension/*.c))

# The install script is generated from the ordered parts under extension/sql.
SQL_PARTS  = $(sort $(wildcard extension/sql/*.sql))
DATA_built = pg_engage--$(EXTVERSION).sql
DATA       = $(wildcard extension/upgrade/pg_engage--*--*.sql)

RDKAFKA_CFLAGS := $(shell pkg-config --cflags rdkafka 2>/dev/null)
RDKAFKA_LIBS   := $(shell pkg-config --libs rdkafka 2>/dev/null || echo -lrdkafka)

PG_CPPFLAGS = -I$(srcdir)/extension -I$(srcdir)/plugin $(RDKAFKA_CFLAGS)
PG_CFLAGS   = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
              -Wno-missing-field-initializers
SHLIB_LINK  = $(RDKAFKA_LIBS)

# pg_regress on a throwaway instance with its own configuration.
REGRESS      = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --temp-config=test/regress.conf --temp-instance=./tmp_check \
               --load-extension=pg_engage

EXTRA_CLEAN = tmp_check results regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The rules shared with the plugin are compiled into this library from their
# source (extension/shared.c includes them); PGXS does not track that.
SHARED_SRC = plugin/engage_handoff.h plugin/topicname.c plugin/tablelist.c plugin/emitauth.c \
             plugin/schemadesc.c
extension/shared.o: $(SHARED_SRC)
$(OBJS): extension/engage.h extension/snapshot.h plugin/engage_handoff.h

pg_engage--$(EXTVERSION).sql: $(SQL_PARTS) pg_engage.control
	cat $(SQL_PARTS) > $@

all: plugin-all
install: plugin-install
clean: plugin-clean

.PHONY: plugin-all plugin-install plugin-clean
plugin-all:
	$(MAKE) -C plugin PG_CONFIG=$(PG_CONFIG)
plugin-install:
	$(MAKE) -C plugin install PG_CONFIG=$(PG_CONFIG)
plugin-clean:
	$(MAKE) -C plugin clean PG_CONFIG=$(PG_CONFIG)

# Since PostgreSQL 15.19 only listed output plugins may be used; older servers
# refuse the setting, so it is written only where the server knows it.
POSTGRES_BIN = $(shell $(PG_CONFIG) --bindir)/postgres
test/plugins.conf: FORCE
	@if $(POSTGRES_BIN) --describe-config 2>/dev/null | grep -q '^output_plugin_libraries'; then \
	    echo "output_plugin_libraries = 'pgoutput, test_decoding, engage_decoder'" > $@; \
	else \
	    echo "# this server has no output_plugin_libraries" > $@; \
	fi
installcheck: test/plugins.conf
REGRESS_OPTS += --temp-config=test/plugins.conf
.PHONY: FORCE

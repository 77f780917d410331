"""The raw lander: Kafka topics → gzip JSON-lines objects in a local directory or S3 (pipeline/LANDING.md).

`python -m pipeline.lander --help` for the command line; `landing` is the reader API.
"""

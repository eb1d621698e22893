"""The study's experiments, one small declarative file each."""

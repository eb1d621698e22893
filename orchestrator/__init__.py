"""orchestrator: Ray Tune + Ray Train sweeps over pose_core, Parquet results, the CLI."""

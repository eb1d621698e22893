"""Running a sweep on Ray: the driver, a runner per scheduler, the Tune pieces, the trial's
worker, the callback that lands rows, trackers and Ray's settings."""

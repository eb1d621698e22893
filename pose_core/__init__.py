"""pose_core: a plain PyTorch library for top-down 2D animal pose estimation.

Skeletons and sigma sets, data readers, the synthetic quadruped generator, dataset mixing,
top-down geometry and augmentation, heatmap codecs, metrics that agree with pycocotools,
timm backbones with heatmap and KITPose heads, losses, and a framework-free training engine.
It never imports Ray, Optuna, pyarrow or s3fs: the orchestrator drives it.
"""

__version__ = "0.1.0"

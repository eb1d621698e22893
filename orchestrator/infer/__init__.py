"""After the study: a trained model applied to new images."""

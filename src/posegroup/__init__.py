"""posegroup: bottom-up multi-person 2D pose estimation (Associative Embedding, PersonLab,
learned recurrent association) on one data, training and evaluation stack."""
__version__ = "0.1.0"

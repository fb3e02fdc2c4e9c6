"""posegroup: bottom-up multi-person 2D pose estimation (Associative Embedding, PersonLab,
learned recurrent association) on one data, training and evaluation stack.

    from posegroup import Predictor
    people = Predictor.load()(image)     # the shipped pretrained model on a uint8 RGB image
"""
__version__ = "0.1.0"


def __getattr__(name):   # lazy: ``import posegroup`` stays light (no torch) until the API is used
    if name in ("Predictor", "Person"):
        from .engine import predictor
        return getattr(predictor, name)
    raise AttributeError(f"module 'posegroup' has no attribute {name!r}")


__all__ = ["Predictor", "Person", "__version__"]

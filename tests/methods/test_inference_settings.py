"""The method contract's inference settings: one frozen, validated settings object per method
(defaults the ones the methods had, method.options' defaults under the test options), and
predict as the composition of network_outputs and decode."""
from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import torch

from posegroup.data.coco import read_image
from posegroup.methods import METHODS, build_method, inference_option_names, method_class
from posegroup.methods.recurrent.head import OMEGA
from posegroup.skeleton import COCO17
from tests.helpers import make_dataset

torch.set_num_threads(1)

#: The inference defaults each method had before its settings class (its predict's fallbacks).
AE_DEFAULTS = {"input_size": 512, "scales": (1.0,), "flip": False, "refine": None, "multiscale_tags": "scale1",
               "preset": "default", "seg_decode": "paper", "seg_threshold": 0.5, "seg_bin_width": 0.2,
               "seg_nms_radius": 1.0, "seg_min_cells": 2, "seg_anchor_radius": 1.5, "seg_anchor_statistic": "median"}
RECURRENT_DEFAULTS = {"input_size": 512, "scales": (1.0,), "flip": False, "stop_threshold": OMEGA,
                      "joint_threshold": 0.015, "subpixel": "dark", "subpixel_blur": 0.5, "person_score": "joints",
                      "select_power": 1.0,                                         # the selection as trained
                      "refine": False, "refine_below": 0.0}      # no refinement: the paper's single-scale test


def _fields(cls) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls)}


def test_ae_defaults_are_the_previous_ones():
    """Every decode.group option None (the preset's value); the others as before."""
    from posegroup.methods.ae import GROUP_KEYWORDS
    s = build_method("ae", COCO17).inference_settings()
    values = dataclasses.asdict(s)
    assert {k: values[k] for k in AE_DEFAULTS} == AE_DEFAULTS
    assert all(values[k] is None for k in GROUP_KEYWORDS if k != "preset")


def test_personlab_defaults_are_the_decoders_own():
    """decode_poses' and segment's defaults, radius and sigmas None (the method's / keypoint set's)."""
    from posegroup.methods.personlab import DECODE_KEYWORDS, PersonLabMethod, decode_poses, segment
    m = build_method("personlab", COCO17, radius=10.0)
    s = m.inference_settings()
    assert (s.input_size, s.scales, s.flip, s.with_masks) == (512, (1.0,), False, True)
    signature = {n: p.default for n, p in inspect.signature(decode_poses).parameters.items()}
    for name in DECODE_KEYWORDS:
        if name not in ("radius", "sigmas"):
            assert getattr(s, name) == signature[name], name
    seg = {n: p.default for n, p in inspect.signature(segment).parameters.items()}
    for name in ("seg_threshold", "distance_threshold", "self_refine_steps", "short_refine_steps"):
        assert getattr(s, name) == seg[name], name
    kw = m.decode_keywords(s)
    assert kw["radius"] == 10.0 and list(kw["sigmas"]) == list(COCO17.sigmas)
    assert set(DECODE_KEYWORDS) | {"with_masks"} <= set(_fields(PersonLabMethod.INFERENCE_SETTINGS))


def test_recurrent_defaults_are_its_settings():
    from posegroup.methods.recurrent import RecurrentSettings
    values = dataclasses.asdict(build_method("recurrent", COCO17).inference_settings())
    assert values == RECURRENT_DEFAULTS
    trained = RecurrentSettings()
    decode = ("stop_threshold", "joint_threshold", "subpixel", "subpixel_blur", "person_score")
    assert {k: getattr(trained, k) for k in decode} == {k: RECURRENT_DEFAULTS[k] for k in decode}


@pytest.mark.parametrize("name,method_options,test,expected", [
    ("ae", {"detection_threshold": 0.2, "refine": False}, {}, {"detection_threshold": 0.2, "refine": False}),
    ("ae", {"detection_threshold": 0.2}, {"detection_threshold": 0.3, "flip": None},
     {"detection_threshold": 0.3, "flip": False}),
    ("ae", {"max_people": 5}, {}, {"max_people": None}),            # AESettings' training slots, not group's
    ("personlab", {"input_size": 256, "decode": {"nms_radius": 4}}, {}, {"input_size": 256, "nms_radius": 4.0}),
    ("personlab", {"decode": {"nms_radius": 4}}, {"nms_radius": 6, "scales": [1, 0.5]},
     {"nms_radius": 6.0, "scales": (1.0, 0.5)}),
    ("recurrent", {"subpixel": "none", "joint_threshold": 0.1}, {"joint_threshold": 0.2},
     {"subpixel": "none", "joint_threshold": 0.2}),
])
def test_method_options_set_the_defaults_test_options_override(name, method_options, test, expected):
    s = build_method(name, COCO17, **method_options).inference_settings(test)
    assert isinstance(s, method_class(name).INFERENCE_SETTINGS)
    assert {k: getattr(s, k) for k in expected} == expected
    assert method_class(name).check_inference_options(test, method_options) == s    # the same without a keypoint set


@pytest.mark.parametrize("name,test,key,value", [
    ("ae", {"tag_threshold": -1}, "tag_threshold", "-1"),
    ("ae", {"detection_threshold": "high"}, "detection_threshold", "'high'"),
    ("ae", {"flip": "yes"}, "flip", "'yes'"),
    ("ae", {"nms_kernel": 4}, "nms_kernel", "4"),
    ("ae", {"scales": [1, -2]}, "scales", "[1, -2]"),
    ("ae", {"preset": "reference", "subpixel": "quadratic"}, "subpixel", "'quadratic'"),
    ("ae", {"seg_threshold": 1.5}, "seg_threshold", "1.5"),                # a method with segmentation
    ("personlab", {"nms_radius": -1}, "nms_radius", "-1"),
    ("personlab", {"vote_threshold": 1}, "vote_threshold", "1"),
    ("personlab", {"with_masks": "no"}, "with_masks", "'no'"),
    ("recurrent", {"subpixel": "foo"}, "subpixel", "'foo'"),
    ("recurrent", {"stop_threshold": 2}, "stop_threshold", "2"),
    ("recurrent", {"subpixel_blur": 0}, "subpixel_blur", "0"),
    ("recurrent", {"subpixel": "offsets"}, "subpixel", "'offsets'"),       # the model has no short offsets
])
def test_bad_values_are_one_line_errors_naming_key_and_value(name, test, key, value):
    options = {"segmentation": True} if key.startswith("seg_") else {}
    for check in (lambda: method_class(name).check_inference_options(test, options, what="test"),
                  lambda: build_method(name, COCO17, **options).inference_settings(test)):
        with pytest.raises(ValueError) as err:
            check()
        msg = str(err.value)
        assert "\n" not in msg and f"option '{key}'" in msg and value in msg, msg


def test_unknown_names_are_refused_with_a_close_match():
    with pytest.raises(ValueError, match=r"unknown option 'detection_treshold' in test.*'detection_threshold'"):
        build_method("ae", COCO17).inference_settings({"detection_treshold": 0.1})
    with pytest.raises(ValueError, match=r"unknown option 'refine' in test"):
        build_method("personlab", COCO17).predict(None, np.zeros((8, 8, 3), np.uint8), refine=True)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_settings_are_frozen_and_updates_are_copies(name):
    m = build_method(name, COCO17)
    s = m.inference_settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.flip = True
    t = m.inference_settings({"flip": True, "scales": [1, 0.5]})
    assert t.flip and t.scales == (1.0, 0.5) and not s.flip and s.scales == (1.0,)
    assert hash(s) == hash(m.inference_settings())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_inference_name_is_a_settings_field(name):
    """The names the CLI, configs and tools use (flags, INFERENCE_OPTIONS, DECODE_OPTIONS,
    predict's own keywords) are the settings' fields, which are inference_option_names."""
    cls = method_class(name)
    fields = set(_fields(cls.INFERENCE_SETTINGS))
    params = inspect.signature(cls.predict).parameters
    named = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    assert set(cls.INFERENCE_FLAGS) | set(cls.INFERENCE_OPTIONS) | set(cls.DECODE_OPTIONS) | named <= fields
    assert inference_option_names(name) == sorted(fields)
    assert {k: v for k, v in _fields(cls.INFERENCE_SETTINGS).items() if k in cls.INFERENCE_OPTIONS} == \
        cls.INFERENCE_OPTIONS


@pytest.fixture(scope="module")
def people_image(tmp_path_factory):
    ann = make_dataset(tmp_path_factory.mktemp("people"), 1, size=128, people=(3, 3), seed=4)
    return read_image(ann.parent / "img000.png")


@pytest.mark.parametrize("name,test", [
    ("ae", {}), ("ae", {"flip": True, "scales": [1.0, 0.5], "detection_threshold": 0.05}),
    ("personlab", {}), ("personlab", {"flip": True, "nms_radius": 6}),
    ("recurrent", {}), ("recurrent", {"subpixel": "none", "stop_threshold": 0.1}),
])
def test_predict_is_decode_of_network_outputs(name, test, people_image):
    """The shipped models: predict gives byte for byte what decode(network_outputs) gives, and
    what the engine's timed predictor (settings built once) gives."""
    from posegroup.engine.checkpoint import load_model
    from posegroup.engine.predict import inference_options, make_predictor
    from posegroup.engine.shipped import shipped_model
    model, method, config = load_model(shipped_model(name))
    opts = {**inference_options(config, method), **test}
    with torch.inference_mode():
        direct = method.predict(model, people_image, **opts)
        settings = method.inference_settings(opts)
        split = method.decode(method.network_outputs(model, people_image, settings), settings, people_image.shape)
    run = make_predictor(model, method, "cpu", **opts)
    timed = run(people_image)
    assert len(direct) == len(split) == len(timed)
    for a, b, c in zip(direct, split, timed):
        if a is None:
            assert b is None and c is None
            continue
        assert a.dtype == b.dtype == c.dtype and a.tobytes() == b.tobytes() == c.tobytes()
    assert run.network_s > 0 and run.decoder_s > 0
    if name != "recurrent":                          # the recurrent shipped model finds few people
        assert len(direct[0]) > 0

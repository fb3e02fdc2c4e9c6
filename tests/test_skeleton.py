import pytest

from posegroup.skeleton import COCO17, CROWDPOSE14, KeypointSet, get_keypoint_set
from tests.conftest import shared_file


def test_coco17_facts_match_spec():
    assert COCO17.num_keypoints == 17
    assert len(COCO17.edges) == 16
    assert COCO17.flip_index == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    assert COCO17.sigmas_array[5] == pytest.approx(0.079)
    # a tree: every keypoint but the root has exactly one parent
    children = [b for _, b in COCO17.edges]
    assert sorted(children) == list(range(1, 17))


def test_directed_edges_are_both_directions():
    d = COCO17.directed_edges
    assert len(d) == 32
    assert d[16:] == [(b, a) for a, b in COCO17.edges]


def test_crowdpose_tree_spans_all_14():
    reached = {12}
    for a, b in CROWDPOSE14.edges:
        assert a in reached
        reached.add(b)
    assert reached == set(range(14))
    assert CROWDPOSE14.flip_index[0] == 1 and CROWDPOSE14.flip_index[12] == 12


def test_from_category_recognises_builtins_and_custom():
    cat = {"keypoints": ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
                         "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                         "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"],
           "skeleton": []}
    assert KeypointSet.from_coco_category(cat) is COCO17
    custom = {"name": "arm", "keypoints": ["left_hand", "right_hand", "chest"], "skeleton": [[1, 3], [2, 3]]}
    ks = KeypointSet.from_coco_category(custom)
    assert ks.num_keypoints == 3 and ks.flip_pairs == ((0, 1),)
    assert set(map(frozenset, ks.edges)) == {frozenset((0, 2)), frozenset((1, 2))}


def test_bad_sets_are_refused():
    with pytest.raises(ValueError, match="sigmas"):
        KeypointSet("x", ("a", "b"), (), (), (0.1,))
    with pytest.raises(ValueError, match="out of range"):
        KeypointSet("x", ("a", "b"), ((0, 5),), (), (0.1, 0.1))
    with pytest.raises(ValueError, match="unknown keypoint set"):
        get_keypoint_set("mpii99")


def test_crowdpose_json_gives_crowdpose14(shared_data):
    p = shared_file("crowdpose/crowdpose_val.json")
    assert get_keypoint_set(ann_file=p) is CROWDPOSE14

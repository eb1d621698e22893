import json
from pathlib import Path

import numpy as np
import pytest

from pose_core.records import DataError
from pose_core.skeletons import (
    ANIMALPOSE,
    ANIMALPOSE_AP10K_SHARED,
    AP10K,
    SKELETONS,
    SigmaError,
    Skeleton,
    canonical_name,
    get_skeleton,
    keypoint_mapping,
    resolve_sigmas,
    sigma_digest,
    skeleton_from_coco_category,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def _category(name: str) -> dict:
    path = REAL / name / "annotations.json"
    if not path.exists():
        pytest.skip(f"shared real data not found at {path}")
    return json.loads(path.read_text())["categories"][0]


@pytest.mark.parametrize(
    ("skeleton", "k", "pairs", "links"), [(ANIMALPOSE, 20, 8, 20), (AP10K, 17, 7, 17)]
)
def test_counts_and_body_halves(skeleton: Skeleton, k: int, pairs: int, links: int) -> None:
    assert skeleton.num_keypoints == k == len(skeleton.sigmas)
    assert len(skeleton.flip_pairs) == pairs
    assert len(skeleton.links) == links
    assert sorted(skeleton.upper_body + skeleton.lower_body) == list(range(k))
    assert SKELETONS[skeleton.name] is skeleton is get_skeleton(skeleton.name)


@pytest.mark.parametrize("skeleton", [ANIMALPOSE, AP10K])
def test_flip_index_is_an_involution_swapping_sides(skeleton: Skeleton) -> None:
    flip = skeleton.flip_index
    assert sorted(flip) == list(range(skeleton.num_keypoints))
    assert all(flip[flip[i]] == i for i in range(skeleton.num_keypoints))
    for i, j in enumerate(flip):
        name = skeleton.keypoints[i]
        if name.startswith("L_"):
            assert skeleton.keypoints[j] == "R_" + name[2:]
        elif not name.startswith("R_"):
            assert j == i


def test_named_links_and_reference_facts() -> None:
    names = ANIMALPOSE.keypoints
    linked = {frozenset((names[a], names[b])) for a, b in ANIMALPOSE.links}
    assert frozenset(("TailBase", "Withers")) in linked
    assert frozenset(("Throat", "R_F_Elbow")) in linked
    assert AP10K.keypoints[4] == "Root of tail"
    assert AP10K.sigmas[5] == 0.079 and ANIMALPOSE.sigmas[8] == 0.107
    # MMPose's Animal-Pose set is the one with asymmetric ears; the index makes that visible.
    assert ANIMALPOSE.sigmas[ANIMALPOSE.index("L_EarBase")] == 0.026
    assert ANIMALPOSE.sigmas[ANIMALPOSE.index("R_EarBase")] == 0.035


def test_index_and_get_skeleton_errors_list_valid_names() -> None:
    with pytest.raises(KeyError, match="L_F_Paw"):
        ANIMALPOSE.index("paw")
    with pytest.raises(KeyError, match="animalpose, ap10k"):
        get_skeleton("coco")


def test_invalid_skeleton_is_rejected() -> None:
    with pytest.raises(ValueError, match="flip pair"):
        Skeleton("x", ("a", "b"), ((0, 0),), (), (), (), (0.1, 0.1))
    with pytest.raises(ValueError, match="sigmas"):
        Skeleton("x", ("a", "b"), (), (), (), (), (0.1,))


def test_animalpose_ap10k_mapping_by_name() -> None:
    forward = keypoint_mapping(ANIMALPOSE, AP10K)
    named = {(ANIMALPOSE.keypoints[a], AP10K.keypoints[b]) for a, b in forward}
    assert len(forward) == len(ANIMALPOSE_AP10K_SHARED) == 16
    for pair in [
        ("L_F_Elbow", "L_Shoulder"),
        ("R_F_Knee", "R_Elbow"),
        ("L_B_Elbow", "L_Hip"),
        ("TailBase", "Root of tail"),
        ("Nose", "Nose"),
        ("R_B_Paw", "R_B_Paw"),
    ]:
        assert pair in named
    unmatched_ap = set(ANIMALPOSE.keypoints) - {a for a, _ in named}
    assert unmatched_ap == {"L_EarBase", "R_EarBase", "Throat", "Withers"}
    assert set(AP10K.keypoints) - {b for _, b in named} == {"Neck"}
    backward = keypoint_mapping(AP10K, ANIMALPOSE)
    assert sorted((b, a) for a, b in backward) == forward
    # The mapping respects left/right: flipping then mapping equals mapping then flipping.
    for a, b in forward:
        assert (ANIMALPOSE.flip_index[a], AP10K.flip_index[b]) in forward


def test_mapping_identity_and_case_insensitive_names() -> None:
    assert keypoint_mapping(AP10K, AP10K) == [(i, i) for i in range(17)]
    src = Skeleton("s", ("Nose", "Tail", "Paw"), (), (), (), (), (0.1,) * 3)
    dst = Skeleton("d", ("paw", "nose", "ear"), (), (), (), (), (0.1,) * 3)
    assert keypoint_mapping(src, dst) == [(0, 1), (2, 0)]


def test_canonical_names_ignore_style() -> None:
    keys = {
        canonical_name(n) for n in ("L_F_Paw", "left_front_paw", "front-left paw", "LeftFrontPaw")
    }
    assert keys == {"leftfrontpaw"}
    assert canonical_name("Root of tail") == canonical_name("root_of_tail")


def test_coco_category_known_and_custom() -> None:
    assert skeleton_from_coco_category(_category("ap10k")) is AP10K  # long snake-case names
    assert skeleton_from_coco_category(_category("animalpose")) is ANIMALPOSE
    fly = skeleton_from_coco_category(_category("fly"))
    assert fly.num_keypoints == 32 and len(fly.flip_pairs) == 14
    names = fly.keypoints
    for a, b in fly.flip_pairs:  # each pair differs only by one L <-> R
        diff = [(x, y) for x, y in zip(names[a], names[b], strict=True) if x != y]
        assert sorted(diff[0]) == ["L", "R"] and len(diff) == 1
    assert (names.index("wingL"), names.index("wingR")) in fly.flip_pairs
    assert fly.links[0] == (1, 0)  # 1-based [2, 1] becomes 0-based
    assert fly.sigmas == (0.1,) * 32 and fly.upper_body == () == fly.lower_body
    horse = skeleton_from_coco_category(_category("horse10"))
    pairs = {(horse.keypoints[a], horse.keypoints[b]) for a, b in horse.flip_pairs}
    assert ("Nearknee", "Offknee") in pairs and len(pairs) == 6
    ak = skeleton_from_coco_category(_category("animalkingdom"))
    assert "Ankle_Left" in ak.keypoints  # trailing space in the source name is stripped
    assert len(ak.flip_pairs) == 8
    mouse = skeleton_from_coco_category(_category("dlc_openfield_mouse"))
    assert mouse.flip_pairs == ((1, 2),)


def test_coco_category_errors_name_the_file() -> None:
    with pytest.raises(DataError, match=r"f\.json: category id 3: field 'skeleton'"):
        skeleton_from_coco_category(
            {"id": 3, "keypoints": ["a", "b"], "skeleton": [[0, 1]]}, "f.json"
        )
    with pytest.raises(DataError, match="field 'keypoints'"):
        skeleton_from_coco_category({"id": 3, "keypoints": []})


def test_named_sigma_sets() -> None:
    assert resolve_sigmas("animalpose", ANIMALPOSE).tolist() == list(ANIMALPOSE.sigmas)
    assert resolve_sigmas("ap10k", AP10K).tolist() == list(AP10K.sigmas)
    assert resolve_sigmas("default", AP10K).dtype == np.float64
    corrected = resolve_sigmas("animalpose-corrected", ANIMALPOSE)
    by_name = dict(zip(ANIMALPOSE.keypoints, corrected, strict=True))
    assert by_name["L_EarBase"] == by_name["R_EarBase"] == 0.035
    assert by_name["Nose"] == 0.026
    assert (by_name["L_F_Elbow"], by_name["L_F_Knee"], by_name["L_F_Paw"]) == (0.079, 0.072, 0.062)
    assert by_name["L_B_Elbow"] == 0.107 and by_name["Throat"] == 0.10
    # Corrected and AP-10K sets are left/right symmetric; MMPose's Animal-Pose set is not.
    assert np.array_equal(corrected, corrected[list(ANIMALPOSE.flip_index)])
    ap10k = resolve_sigmas("ap10k", AP10K)
    assert np.array_equal(ap10k, ap10k[list(AP10K.flip_index)])
    default = resolve_sigmas("animalpose", ANIMALPOSE)
    assert not np.array_equal(default, default[list(ANIMALPOSE.flip_index)])
    assert resolve_sigmas("uniform:0.07", AP10K).tolist() == [0.07] * 17


def test_sigma_json_files(tmp_path: Path) -> None:
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([0.05] * 17))
    assert resolve_sigmas(str(listed), AP10K).tolist() == [0.05] * 17
    named = tmp_path / "named.json"
    values = {n: 0.01 * (i + 1) for i, n in enumerate(reversed(AP10K.keypoints))}
    named.write_text(json.dumps(values))
    got = resolve_sigmas(str(named), AP10K)
    assert got.tolist() == [values[n] for n in AP10K.keypoints]


@pytest.mark.parametrize(
    ("spec", "skeleton", "pattern"),
    [
        ("animalpose", AP10K, "expected 17, got 20"),
        ("ap10k", ANIMALPOSE, "expected 20, got 17"),
        ("animalpose-corrected", AP10K, "expected 17, got 20"),
        ("uniform:0", AP10K, "finite and > 0"),
        ("uniform:nan", AP10K, "finite and > 0"),
        ("uniform:-1", AP10K, "finite and > 0"),
        ("uniform:abc", AP10K, "needs a number"),
        ("mmpose", AP10K, "not a named set"),
        ("/nonexistent/sigmas.json", AP10K, "cannot read JSON"),
    ],
)
def test_sigma_spec_errors(spec: str, skeleton: Skeleton, pattern: str) -> None:
    with pytest.raises(SigmaError, match=pattern) as info:
        resolve_sigmas(spec, skeleton)
    assert repr(spec) in str(info.value)


def test_named_set_needs_matching_names() -> None:
    renamed = Skeleton("other", tuple(f"k{i}" for i in range(20)), (), (), (), (), (0.1,) * 20)
    with pytest.raises(SigmaError, match="written for skeleton 'animalpose'"):
        resolve_sigmas("animalpose", renamed)


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ([0.05] * 16, "expected 17, got 16"),
        ([0.05] * 18, "expected 17, got 18"),
        ([0.05] * 16 + [-0.1], "finite and > 0"),
        ([0.05] * 16 + ["x"], "must be a number"),
        ({n: 0.05 for n in AP10K.keypoints[:-1]}, "missing \\['R_B_Paw'\\]"),
        ({**{n: 0.05 for n in AP10K.keypoints}, "Tail": 0.1}, "unknown \\['Tail'\\]"),
        ("0.05", "got str"),
    ],
)
def test_sigma_json_errors(tmp_path: Path, content: object, pattern: str) -> None:
    path = tmp_path / "sigmas.json"
    path.write_text(json.dumps(content))
    with pytest.raises(SigmaError, match=pattern) as info:
        resolve_sigmas(str(path), AP10K)
    assert str(path) in str(info.value)
    broken = tmp_path / "broken.json"
    broken.write_text("[0.1, 0.2")
    with pytest.raises(SigmaError, match="cannot read JSON"):
        resolve_sigmas(str(broken), AP10K)


def test_sigma_digest_is_stable_and_distinguishes_sets() -> None:
    a = resolve_sigmas("animalpose", ANIMALPOSE)
    b = resolve_sigmas("animalpose-corrected", ANIMALPOSE)
    assert sigma_digest(a) == sigma_digest(np.array(ANIMALPOSE.sigmas) + 1e-12)
    assert sigma_digest(a) != sigma_digest(b)
    assert len(sigma_digest(a)) == 12 and int(sigma_digest(a), 16) >= 0

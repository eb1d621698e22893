from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from pose_core.mixing import MixSource, digest_of, image_count, mix, subset
from pose_core.records import Instance


def make(source: str, images: int, per_image: int = 1, scenes: int = 0) -> list[Instance]:
    out = []
    for image in range(images):
        for j in range(per_image):
            out.append(
                Instance(
                    image_path=f"/data/{source}/{image:05d}.jpg",
                    image_id=image + 1,
                    annotation_id=image * per_image + j + 1,
                    width=64,
                    height=48,
                    bbox=(1.0, 1.0, 10.0, 10.0),
                    keypoints=np.zeros((20, 3), np.float32),
                    area=100.0,
                    source=source,
                    scene=f"scene_{image % scenes}" if scenes else None,
                )
            )
    return out


def keys(instances: list[Instance]) -> list[str]:
    return [i.key() for i in instances]


@pytest.mark.parametrize("balance", ["none", "scene"])
def test_subsets_are_nested_for_every_seed(balance: str) -> None:
    pool = make("syn", 200, scenes=4)
    for seed in (0, 1, 7):
        sizes = [0, 1, 10, 50, 100, 200]
        drawn = [keys(subset(pool, n, seed, balance)) for n in sizes]  # type: ignore[arg-type]
        for smaller, larger in zip(drawn, drawn[1:], strict=False):
            assert larger[: len(smaller)] == smaller
        assert [len(d) for d in drawn] == sizes
    # a different seed draws a different 10
    assert set(keys(subset(pool, 10, 0))) != set(keys(subset(pool, 10, 1)))


def test_order_of_the_input_list_does_not_matter() -> None:
    pool = make("real", 60, per_image=2, scenes=3)
    shuffled = pool[:]
    random.Random(3).shuffle(shuffled)
    for balance in ("none", "scene"):
        drawn = keys(subset(pool, 17, 5, balance))  # type: ignore[arg-type]
        assert drawn == keys(subset(shuffled, 17, 5, balance))  # type: ignore[arg-type]
    a = mix([MixSource("r", pool, count=20)], seed=2)
    b = mix([MixSource("r", shuffled, count=20)], seed=2)
    assert a.digest == b.digest and a.ids == b.ids


def test_scene_balance() -> None:
    pool = make("syn", 100, scenes=4)
    drawn = subset(pool, 8, 0, "scene")
    assert Counter(i.scene for i in drawn) == {f"scene_{s}": 2 for s in range(4)}
    # uneven counts differ by at most one per scene, at every prefix
    for n in range(1, 41):
        per_scene = Counter(i.scene for i in subset(pool, n, 3, "scene"))
        assert max(per_scene.values()) - min(per_scene.values(), default=0) <= 1
        assert len(per_scene) == min(n, 4)
    # without balancing, a small draw is usually not even: the option does something
    uneven = [Counter(i.scene for i in subset(pool, 8, s)) for s in range(20)]
    assert any(max(c.values()) > 2 for c in uneven)


def test_scene_balance_when_a_scene_runs_out() -> None:
    pool = make("syn", 12, scenes=4)
    small = [i for i in pool if i.scene != "scene_0" or i.image_id == 1]  # scene_0: 1 image
    assert Counter(i.scene for i in subset(small, 7, 0, "scene")) == {
        "scene_0": 1,
        "scene_1": 2,
        "scene_2": 2,
        "scene_3": 2,
    }
    assert len(subset(small, 10, 0, "scene")) == 10


def test_images_are_drawn_whole() -> None:
    pool = make("ap", 30, per_image=3)
    drawn = subset(pool, 7, 1)
    assert len(drawn) == 21 and image_count(drawn) == 7
    per_image = Counter(i.image_id for i in drawn)
    assert set(per_image.values()) == {3}
    mixed = mix([MixSource("ap", pool, count=7)])
    assert mixed.counts == {"ap": 7} and len(mixed.ids["ap"]) == 21


def test_balance_by_source() -> None:
    pool = make("a", 50) + make("b", 5)
    drawn = subset(pool, 10, 0, "source")
    assert Counter(i.source for i in drawn) == {"a": 5, "b": 5}


def test_mix_counts_ratio_and_digest() -> None:
    base = make("animalpose", 40, per_image=2)
    syn = make("synthetic", 100, scenes=4)
    real = make("lynx", 30)
    mixed = mix(
        [
            MixSource("animalpose", base),
            MixSource("synthetic", syn, ratio=0.5, balance_by="scene"),
            MixSource("lynx", real, count=10),
        ],
        seed=4,
    )
    assert mixed.counts == {"animalpose": 40, "synthetic": 20, "lynx": 10}
    assert len(mixed.instances) == 80 + 20 + 10
    assert Counter(i.scene for i in mixed.instances if i.source == "synthetic") == {
        f"scene_{s}": 5 for s in range(4)
    }
    assert list(mixed.ids) == ["animalpose", "synthetic", "lynx"]
    assert keys(list(mixed.instances)) == [k for ks in mixed.ids.values() for k in ks]
    assert len(mixed.digest) == 16 and int(mixed.digest, 16) >= 0
    # digest: stable, independent of order, sensitive to content
    again = mix(
        [
            MixSource("lynx", real[::-1], count=10),
            MixSource("animalpose", base[::-1]),
            MixSource("synthetic", syn[::-1], ratio=0.5, balance_by="scene"),
        ],
        seed=4,
    )
    assert again.digest == mixed.digest
    assert digest_of(list(mixed.instances)[::-1]) == mixed.digest
    assert (
        mix([MixSource("lynx", real, count=11)], seed=4).digest
        != mix([MixSource("lynx", real, count=10)], seed=4).digest
    )


def test_count_zero_and_whole() -> None:
    pool = make("s", 5)
    assert subset(pool, 0, 0) == []
    assert len(subset(pool, None, 0)) == 5
    mixed = mix([MixSource("s", pool, count=0)])
    assert mixed.instances == () and mixed.counts == {"s": 0} and mixed.ids == {"s": ()}


def test_errors_name_the_source_and_counts() -> None:
    pool = make("lynx", 12)
    with pytest.raises(ValueError, match=r"'lynx-train'.*asked for 13 images.*12 available"):
        mix([MixSource("lynx-train", pool, count=13)])
    with pytest.raises(ValueError, match="'syn'.*asked for 24.*12 available"):
        mix([MixSource("base", make("b", 24)), MixSource("syn", pool, ratio=1.0)])
    with pytest.raises(ValueError, match="non-negative"):
        subset(pool, -1, 0)
    with pytest.raises(ValueError, match="not both"):
        mix([MixSource("x", pool, count=1, ratio=0.5)])
    with pytest.raises(ValueError, match="count=None"):
        mix([MixSource("x", pool, ratio=0.5)])
    with pytest.raises(ValueError, match="duplicate"):
        mix([MixSource("x", pool), MixSource("x", pool)])
    with pytest.raises(ValueError, match="valid: none, scene, source"):
        subset(pool, 1, 0, "species")  # type: ignore[arg-type]

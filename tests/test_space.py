import random

import pytest

from ovo.space import Arch, ArchError, SearchSpace, SpaceError, load_space

SPACES = ["nano", "tiny", "small", "base"]


def test_autoformer_spaces_have_their_published_choices():
    t = load_space("tiny")
    assert (t.embed_dim, t.depth, t.num_heads, t.mlp_ratio) == (
        (192, 216, 240),
        (12, 13, 14),
        (3, 4),
        (3.5, 4.0),
    )
    s = load_space("small")
    assert (s.embed_dim, s.num_heads, s.mlp_ratio) == ((320, 384, 448), (5, 6, 7), (3.0, 3.5, 4.0))
    b = load_space("base")
    assert (b.embed_dim, b.depth, b.num_heads) == ((528, 576, 624), (14, 15, 16), (9, 10))


@pytest.mark.parametrize("name", SPACES)
def test_arch_roundtrips_through_yaml_and_json(name, tmp_path):
    space = load_space(name)
    rng = random.Random(0)
    for _ in range(10):
        arch = space.sample(rng)
        path = tmp_path / "a.yaml"
        arch.to_yaml(path)
        assert Arch.from_yaml(path) == arch
        assert Arch.from_yaml(arch.to_json()) == arch
        assert hash(Arch.from_dict(arch.to_dict())) == hash(arch)


def test_arch_is_immutable():
    arch = Arch.uniform(64, 4, 2, 2.0)
    with pytest.raises(AttributeError):
        arch.embed_dim = 96  # type: ignore[misc]
    assert isinstance(arch.num_heads, tuple)


def test_seeded_sampling_is_reproducible_and_covers_the_space():
    space = load_space("nano")
    a = [space.sample(random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng1, rng2 = random.Random(123), random.Random(123)
    seq1 = [space.sample(rng1) for _ in range(50)]
    seq2 = [space.sample(rng2) for _ in range(50)]
    assert seq1 == seq2
    assert all(arch in space for arch in seq1)
    assert {a.depth for a in seq1} == set(space.depth)
    assert {a.embed_dim for a in seq1} == set(space.embed_dim)
    assert len(set(seq1)) > 40


def test_min_max_and_size():
    space = SearchSpace([1, 2], [1, 2], [1], [1.0, 2.0])
    # depth 1: 2 embeds * 2 ratios; depth 2: 2 * 2^2
    assert space.num_archs() == 2 * 2 + 2 * 4
    assert space.max_arch == Arch(2, (1, 1), (2.0, 2.0))
    assert space.min_arch == Arch(1, (1,), (1.0,))
    assert load_space("tiny").num_archs() == 3 * sum(4**d for d in (12, 13, 14))


@pytest.mark.parametrize(
    "arch, field",
    [
        (Arch(100, (2, 2, 2, 2), (2.0,) * 4), "embed_dim=100"),
        (Arch(64, (2,) * 7, (2.0,) * 7), "depth=7"),
        (Arch(64, (2, 2, 5, 2), (2.0,) * 4), "num_heads[2]=5"),
        (Arch(64, (2,) * 4, (2.0, 2.0, 2.0, 2.5)), "mlp_ratio[3]=2.5"),
    ],
)
def test_validation_names_the_offending_field(arch, field):
    with pytest.raises(ArchError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_space("nano").validate(arch)
    assert arch not in load_space("nano")


def test_malformed_arch_and_space_errors():
    with pytest.raises(ArchError, match="num_heads entries"):
        Arch(64, (2, 2), (2.0,))
    with pytest.raises(ArchError, match="depth=3"):
        Arch.from_dict({"embed_dim": 64, "depth": 3, "num_heads": [2, 2], "mlp_ratio": [2, 2]})
    with pytest.raises(ArchError, match="unknown arch field"):
        Arch.from_dict({"embed_dim": 64, "num_heads": [2], "mlp_ratio": [2], "heads": 3})
    assert Arch.from_dict(
        {"embed_dim": 64, "depth": 3, "num_heads": 2, "mlp_ratio": 2.0}
    ) == Arch.uniform(64, 3, 2, 2.0)
    with pytest.raises(SpaceError, match="embed_dim has no choices"):
        SearchSpace([], [1], [1], [1.0])
    with pytest.raises(SpaceError, match="depth choices must be positive"):
        SearchSpace([8], [0, 1], [1], [1.0])
    with pytest.raises(SpaceError, match="unknown setting space.heads"):
        SearchSpace.from_dict(
            {"embed_dim": [8], "depth": [1], "num_heads": [1], "mlp_ratio": [1], "heads": [1]}
        )
    with pytest.raises(SpaceError, match="unknown space 'huge'"):
        load_space("huge")


def test_mutation_and_crossover_stay_in_space_and_are_seeded():
    space = load_space("tiny")
    rng = random.Random(1)
    parents = [space.sample(rng) for _ in range(20)]
    kids_a = [space.mutate(p, random.Random(i)) for i, p in enumerate(parents)]
    kids_b = [space.mutate(p, random.Random(i)) for i, p in enumerate(parents)]
    assert kids_a == kids_b
    assert all(k in space for k in kids_a)
    assert sum(k != p for k, p in zip(kids_a, parents)) > 10
    # mutation with zero probabilities is the identity
    assert all(space.mutate(p, rng, 0.0, 0.0) == p for p in parents)
    for a, b in zip(parents, parents[1:]):
        child = space.crossover(a, b, rng)
        assert child in space
        assert child.depth in (a.depth, b.depth) and child.embed_dim in (a.embed_dim, b.embed_dim)
        for i in range(child.depth):
            assert child.num_heads[i] in {p.num_heads[i] for p in (a, b) if i < p.depth}


def test_sub_spaces_for_teachers():
    space = load_space("tiny")
    up = space.upper(1)
    assert up.num_archs() == 1 and space.sample(random.Random(0), up) == space.max_arch
    rng = random.Random(0)
    for _ in range(50):
        student = space.sample(rng)
        teacher = space.sample_at_least(student, rng)
        assert teacher in space
        assert teacher.embed_dim >= student.embed_dim and teacher.depth >= student.depth
        assert all(t >= s for t, s in zip(teacher.num_heads, student.num_heads))
        assert all(t >= s for t, s in zip(teacher.mlp_ratio, student.mlp_ratio))
    assert space.sample_at_least(space.max_arch, rng) == space.max_arch

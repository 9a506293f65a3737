"""The ``Pool`` contract (pool/base.py), run against every engine: memory, SQLite, Redis,
and SQLite inside the integrity wrapper (``tagged``), as nodes use it."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantumrng.block import Block
from quantumrng.errors import EntropyUnavailable, Unavailable
from quantumrng.pool import MemoryPool, Pool, PoolLevel, RedisPool, SqlitePool, TaggedPool
from quantumrng.provenance import Provenance
from tests.blocks import block_for, make_blocks
from tests.pool.support import delete_prefix, new_prefix, redis_url

ENGINES = ["memory", "sqlite", "redis", "tagged"]
KEY = bytes(range(32))
KINDS = ("os", "simulator", "ibm")

MakePool = Callable[[], Pool]


@pytest.fixture(params=ENGINES)
def make_pool(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakePool]:
    """A factory of fresh, empty pools of one engine; all are closed and wiped after."""
    engine: str = request.param
    url = redis_url() if engine == "redis" else ""
    made: list[Pool] = []
    prefixes: list[str] = []

    def make() -> Pool:
        pool: Pool
        if engine == "memory":
            pool = MemoryPool()
        elif engine == "sqlite":
            pool = SqlitePool(tmp_path / f"{uuid.uuid4().hex}.sqlite3")
        elif engine == "tagged":
            pool = TaggedPool(SqlitePool(tmp_path / f"{uuid.uuid4().hex}.sqlite3"), KEY)
        else:
            prefixes.append(new_prefix())
            pool = RedisPool(url, prefix=prefixes[-1])
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.close()
    for prefix in prefixes:
        delete_prefix(prefix)


@pytest.fixture
def pool(make_pool: MakePool) -> Pool:
    return make_pool()


def datas(blocks: list[Block]) -> list[bytes]:
    return [b.data for b in blocks]


def test_engine_is_a_pool(pool: Pool) -> None:
    assert isinstance(pool, Pool)


def test_new_pool_is_empty(pool: Pool) -> None:
    assert pool.level() == PoolLevel(blocks=0, credited_bits=0, by_source={})
    assert pool.recent() == []
    with pytest.raises(EntropyUnavailable):
        pool.take(1)


def test_put_then_take_returns_the_blocks_once(pool: Pool) -> None:
    blocks = make_blocks(5)
    pool.put(blocks)
    assert pool.level() == PoolLevel(blocks=5, credited_bits=5 * 512, by_source={"os": 5})
    assert datas(pool.take(5)) == datas(blocks)
    assert pool.level().blocks == 0
    with pytest.raises(EntropyUnavailable):
        pool.take(1)


def test_take_is_oldest_first_across_puts_and_kinds(pool: Pool) -> None:
    a, b, c = make_blocks(3, "os"), make_blocks(2, "simulator", 0), make_blocks(3, "ibm")
    for blocks in (a, b, c):
        pool.put(blocks)
    order = datas(a + b + c)
    assert datas(pool.take(2)) == order[:2]
    assert datas(pool.take(4)) == order[2:6]
    assert datas(pool.take(2)) == order[6:]


def test_take_with_source_takes_only_that_kind(pool: Pool) -> None:
    os1, sim, os2 = make_blocks(2, "os"), make_blocks(3, "simulator", 0), make_blocks(2, "os")
    for blocks in (os1, sim, os2):
        pool.put(blocks)
    taken = pool.take(3, source="os")
    assert datas(taken) == datas(os1 + os2[:1])
    assert {b.provenance.source for b in taken} == {"os"}
    assert pool.level().by_source == {"os": 1, "simulator": 3}
    assert datas(pool.take(3, source="simulator")) == datas(sim)
    assert pool.level() == PoolLevel(blocks=1, credited_bits=512, by_source={"os": 1})


@pytest.mark.parametrize("source", [None, "os", "simulator", "file"])
def test_short_take_removes_nothing(pool: Pool, source: str | None) -> None:
    pool.put(make_blocks(3, "os"))
    pool.put(make_blocks(1, "simulator", 0))
    before, recent = pool.level(), pool.recent()
    want = {None: 5, "os": 4, "simulator": 2, "file": 1}[source]
    with pytest.raises(EntropyUnavailable) as info:
        pool.take(want, source=source)
    assert info.value.status == 503
    assert pool.level() == before
    assert pool.recent() == recent
    assert len(pool.take(4)) == 4


@pytest.mark.parametrize(("n", "source"), [(0, None), (-1, None), (-1000, "os"), (1, "")])
def test_take_of_less_than_one_block_is_a_value_error(
    pool: Pool, n: int, source: str | None
) -> None:
    pool.put(make_blocks(2))
    with pytest.raises(ValueError):
        pool.take(n, source=source)
    assert pool.level().blocks == 2


def test_provenance_round_trips(pool: Pool) -> None:
    prov = Provenance(
        source="ibm",
        harvest_id="job-d1x2/0",
        harvested_at=1_732_550_400.123456789,
        backend="ibm_kyiv",
        job_id="d1x2y3z4",
        qubits=127,
        shots=100_000,
    )
    blocks = [block_for(prov, i, 512) for i in range(3)]
    pool.put(blocks)
    assert pool.recent() == [(prov, 3)]
    taken = pool.take(3)
    assert [b.provenance for b in taken] == [prov] * 3
    assert [b.credited_bits for b in taken] == [512] * 3
    assert taken == blocks


def test_recent_lists_newest_harvests_with_blocks_left(pool: Pool) -> None:
    a, b, c = make_blocks(2, "os"), make_blocks(3, "simulator", 0), make_blocks(1, "ibm")
    for blocks in (a, b, c):
        pool.put(blocks)
    provs = [x[0].provenance for x in (a, b, c)]
    assert pool.recent() == [(provs[2], 1), (provs[1], 3), (provs[0], 2)]
    assert pool.recent(2) == [(provs[2], 1), (provs[1], 3)]
    assert pool.recent(0) == []
    pool.take(3)
    assert pool.recent() == [(provs[2], 1), (provs[1], 2)]
    with pytest.raises(ValueError):
        pool.recent(-1)


def test_put_again_to_a_harvest_keeps_its_first_provenance_and_moves_it_to_front(
    pool: Pool,
) -> None:
    first = make_blocks(2, "os", harvest_id="h")
    other = make_blocks(1, "simulator", 0)
    pool.put(first)
    pool.put(other)
    later = make_blocks(1, "ibm", harvest_id="h")
    pool.put(later)
    assert pool.recent() == [(first[0].provenance, 3), (other[0].provenance, 1)]
    assert pool.level().by_source == {"os": 3, "simulator": 1}
    if isinstance(pool, TaggedPool):  # ``later`` was sealed as ibm and comes back as os
        assert pool.take(2, source="os") == first
        with pytest.raises(EntropyUnavailable):
            pool.take(1, source="os")
        assert pool.failures_by_reason() == {"bad tag": 1}
        return
    taken = pool.take(3, source="os")
    assert datas(taken) == datas(first + later)
    assert {b.provenance for b in taken} == {first[0].provenance}


def test_put_of_several_harvests_is_one_step(pool: Pool) -> None:
    a, b = make_blocks(2, "os"), make_blocks(2, "simulator", 0)
    pool.put(a + b)
    assert pool.level() == PoolLevel(4, 1024, {"os": 2, "simulator": 2})
    assert [p for p, _ in pool.recent()] == [b[0].provenance, a[0].provenance]


def test_empty_put_changes_nothing(pool: Pool) -> None:
    pool.put([])
    assert pool.level().blocks == 0


@pytest.mark.parametrize(
    "bad",
    [
        lambda b: Block(b.data[:-1], b.credited_bits, b.provenance),
        lambda b: Block(b.data + b"\0", b.credited_bits, b.provenance),
        lambda b: Block(b.data, -1, b.provenance),
        lambda b: Block(b.data, 513, b.provenance),
        lambda b: Block(b.data, 512, Provenance("os", "", 0.0)),
        lambda b: Block(b.data, 512, Provenance("", "h", 0.0)),
        lambda b: Block(b.data, 512, Provenance("os", b.provenance.harvest_id, 1.0)),
    ],
    ids=["short", "long", "negative-credit", "over-credit", "no-id", "no-source", "mixed-prov"],
)
def test_invalid_put_is_refused_whole(pool: Pool, bad: Callable[[Block], Block]) -> None:
    blocks = make_blocks(3)
    with pytest.raises(ValueError):
        pool.put([*blocks, bad(blocks[0])])
    assert pool.level().blocks == 0
    assert pool.recent() == []


def test_no_bytes_in_reprs_or_errors(pool: Pool) -> None:
    blocks = make_blocks(3)
    pool.put(blocks)
    taken = pool.take(2)
    with pytest.raises(EntropyUnavailable) as info:
        pool.take(2)
    texts = [repr(pool), str(pool), repr(taken), str(info.value), repr(pool.level())]
    texts.append(repr(pool.recent()))
    for block in blocks:
        for shown in (block.data.hex(), repr(block.data)[2:-1], block.data[:8].hex()):
            assert not any(shown in text for text in texts)


def test_closed_pool_fails_closed(make_pool: MakePool) -> None:
    pool = make_pool()
    pool.put(make_blocks(2))
    pool.close()
    with pytest.raises(Unavailable):
        pool.take(1)
    with pytest.raises(Unavailable):
        pool.put(make_blocks(1))


# --- model-based property test -------------------------------------------------------


@dataclass
class Held:
    provenance: Provenance
    left: int


@dataclass
class Model:
    """The contract written as plainly as possible: a list in put order."""

    blocks: list[Block] = field(default_factory=list)
    harvests: OrderedDict[str, Held] = field(default_factory=OrderedDict)

    def put(self, blocks: list[Block]) -> None:
        for block in blocks:
            held = self.harvests.setdefault(block.provenance.harvest_id, Held(block.provenance, 0))
            self.blocks.append(Block(block.data, block.credited_bits, held.provenance))
            held.left += 1
        for hid in dict.fromkeys(b.provenance.harvest_id for b in blocks):
            self.harvests.move_to_end(hid)

    def take(self, n: int, source: str | None) -> list[Block] | None:
        picked = [b for b in self.blocks if source in (None, b.provenance.source)][:n]
        if len(picked) < n:
            return None
        ids = {id(b) for b in picked}
        self.blocks = [b for b in self.blocks if id(b) not in ids]
        for block in picked:
            held = self.harvests[block.provenance.harvest_id]
            held.left -= 1
            if held.left == 0:
                del self.harvests[block.provenance.harvest_id]
        return picked

    def level(self) -> PoolLevel:
        by_source: dict[str, int] = {}
        for b in self.blocks:
            by_source[b.provenance.source] = by_source.get(b.provenance.source, 0) + 1
        return PoolLevel(len(self.blocks), sum(b.credited_bits for b in self.blocks), by_source)

    def recent(self) -> list[tuple[Provenance, int]]:
        return [(h.provenance, h.left) for h in reversed(self.harvests.values())]


@dataclass(frozen=True)
class Put:
    """Put harvests of (kind, blocks, credited bits, index of a live harvest to add to)."""

    specs: list[tuple[str, int, int, int | None]]


@dataclass(frozen=True)
class Take:
    n: int
    source: str | None


spec = st.tuples(
    st.sampled_from(KINDS), st.integers(1, 4), st.sampled_from([0, 512]),
    st.one_of(st.none(), st.integers(0, 3)),
)  # fmt: skip
ops = st.one_of(
    st.builds(Put, st.lists(spec, min_size=1, max_size=2)),
    st.builds(Take, st.integers(1, 6), st.sampled_from([None, *KINDS])),
)


def blocks_for(put: Put, model: Model) -> list[Block]:
    """New blocks; a spec with an index adds to that live harvest (under a new provenance)."""
    live, used = list(model.harvests), set[str]()
    blocks: list[Block] = []
    for kind, n, bits, reuse in put.specs:
        hid = live[reuse % len(live)] if reuse is not None and live else None
        if hid in used:
            hid = None
        blocks += make_blocks(n, kind, bits, harvest_id=hid)
        used.add(blocks[-1].provenance.harvest_id)
    return blocks


def as_held(block: Block, model: Model) -> Block:
    """``block`` under the provenance its harvest id already has in the pool, if any."""
    held = model.harvests.get(block.provenance.harvest_id)
    return block if held is None else Block(block.data, block.credited_bits, held.provenance)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(ops, max_size=12))
def test_pool_behaves_like_the_model(make_pool: MakePool, steps: list[Put | Take]) -> None:
    pool, model = make_pool(), Model()
    for step in steps:
        if isinstance(step, Put):
            blocks = blocks_for(step, model)
            if isinstance(pool, TaggedPool):  # a new provenance for a live harvest is a relabel
                blocks = [as_held(b, model) for b in blocks]
            pool.put(blocks)
            model.put(blocks)
        else:
            expected = model.take(step.n, step.source)
            if expected is None:
                with pytest.raises(EntropyUnavailable):
                    pool.take(step.n, source=step.source)
            else:
                assert pool.take(step.n, source=step.source) == expected
        assert pool.level() == model.level()
        assert pool.recent(100) == model.recent()


def test_discard_removes_every_block_of_the_harvests_and_only_those(pool: Pool) -> None:
    keep = make_blocks(3, "ibm")
    bad_a, bad_b = make_blocks(2, "ibm"), make_blocks(4, "os")
    pool.put(keep[:1] + bad_a + keep[1:2])
    pool.put(bad_b + keep[2:])
    ids = [bad_a[0].provenance.harvest_id, bad_b[0].provenance.harvest_id, "unknown"]
    assert pool.discard(ids) == 6
    assert pool.level() == PoolLevel(blocks=3, credited_bits=3 * 512, by_source={"ibm": 3})
    assert {p.harvest_id for p, _ in pool.recent()} == {keep[0].provenance.harvest_id}
    assert datas(pool.take(3)) == datas(keep)
    assert pool.discard(ids) == 0
    assert pool.discard([]) == 0


def test_records_round_trip_replace_and_delete(pool: Pool) -> None:
    assert pool.read_record("assessment:ibm") is None
    pool.write_record("assessment:ibm", b'{"h": 0.9}')
    pool.write_record("state:ibm", bytes(range(256)))
    assert pool.read_record("assessment:ibm") == b'{"h": 0.9}'
    pool.write_record("assessment:ibm", b"second")
    assert pool.read_record("assessment:ibm") == b"second"
    assert pool.read_record("state:ibm") == bytes(range(256))
    pool.write_record("assessment:ibm", None)
    assert pool.read_record("assessment:ibm") is None
    pool.write_record("assessment:ibm", None)  # deleting nothing is fine


@pytest.mark.parametrize("name", ["", "UPPER", "a b", "x" * 129, "é"])
def test_a_bad_record_name_is_a_value_error(pool: Pool, name: str) -> None:
    with pytest.raises(ValueError, match="record name"):
        pool.write_record(name, b"x")
    with pytest.raises(ValueError, match="record name"):
        pool.read_record(name)

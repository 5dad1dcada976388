"""Native tier: the ring arithmetic, the frame pool and the option checks of the ring core,
through cffi.

The rings are exercised over plain memory with producer/consumer indices placed just below the
u32 wrap, which is where the Go library's signed/masked arithmetic went wrong.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import Any

import pytest
from agent.xdp._ringcore import ffi, lib

pytestmark = pytest.mark.native

U32 = 2**32


class RingPair:
    """A producer view and a consumer view over one ring's shared memory."""

    def __init__(self, size: int, start: int) -> None:
        self.prod_idx = ffi.new("__u32 *", start % U32)
        self.cons_idx = ffi.new("__u32 *", start % U32)
        self.flags = ffi.new("__u32 *", 0)
        self.mem = ffi.new("__u64[]", size)
        self.prod = ffi.new("struct rl_ring *")
        self.cons = ffi.new("struct rl_ring *")
        lib.rl_ring_init(self.prod, self.prod_idx, self.cons_idx, self.mem, self.flags, size, 1)
        lib.rl_ring_init(self.cons, self.prod_idx, self.cons_idx, self.mem, self.flags, size, 0)
        self.size = size

    def produce(self, values: list[int]) -> int:
        idx = ffi.new("__u32 *")
        n = lib.rl_ring_prod_reserve(self.prod, len(values), idx)
        for i, v in enumerate(values[:n]):
            self.mem[(idx[0] + i) & (self.size - 1)] = v
        if n:
            lib.rl_ring_prod_submit(self.prod)
        return int(n)

    def consume(self, want: int) -> list[int]:
        idx = ffi.new("__u32 *")
        n = lib.rl_ring_cons_peek(self.cons, want, idx)
        out = [int(self.mem[(idx[0] + i) & (self.size - 1)]) for i in range(n)]
        if n:
            lib.rl_ring_cons_release(self.cons)
        return out


@pytest.mark.parametrize("start", [0, U32 - 1, U32 - 5, U32 - 64, U32 - 100, 2**31 - 3])
def test_ring_counts_stay_exact_across_u32_wrap(start: int) -> None:
    r = RingPair(64, start)
    assert lib.rl_ring_prod_nb_free(r.prod, 1000) == 64
    assert lib.rl_ring_cons_nb_avail(r.cons, 1000) == 0
    sent = received = 0
    for _ in range(50):  # 50 rounds of 40 entries cross the wrap for every start above
        batch = list(range(sent, sent + 40))
        assert r.produce(batch) == 40
        sent += 40
        assert lib.rl_ring_prod_nb_free(r.prod, 1000) == 24
        assert lib.rl_ring_cons_nb_avail(r.cons, 1000) == 40
        got = r.consume(40)
        assert got == list(range(received, received + 40))
        received += 40
    assert r.prod_idx[0] == (start + sent) % U32
    assert r.cons_idx[0] == (start + sent) % U32


def test_ring_full_refuses_and_partial_reserve_is_all_or_nothing() -> None:
    r = RingPair(8, U32 - 3)
    assert r.produce(list(range(8))) == 8
    assert r.produce([99]) == 0  # full: a producer that overwrote would corrupt entries
    assert r.consume(3) == [0, 1, 2]
    assert r.produce([8, 9, 10, 11]) == 0  # only 3 free: reserve is exact, nothing written
    assert r.produce([8, 9, 10]) == 3
    assert r.consume(100) == [3, 4, 5, 6, 7, 8, 9, 10]


def test_unpeek_gives_entries_back_unread() -> None:
    r = RingPair(16, U32 - 2)
    r.produce([1, 2, 3, 4])
    idx = ffi.new("__u32 *")
    assert lib.rl_ring_cons_peek(r.cons, 4, idx) == 4
    lib.rl_ring_cons_unpeek(r.cons, 2)
    lib.rl_ring_cons_release(r.cons)
    assert r.consume(10) == [3, 4]


def test_needs_wakeup_reads_the_flag() -> None:
    r = RingPair(8, 0)
    assert not lib.rl_ring_needs_wakeup(r.prod)
    r.flags[0] = 1
    assert lib.rl_ring_needs_wakeup(r.prod)


@pytest.fixture
def pool() -> Iterator[Any]:
    out = ffi.new("struct rl_pool **")
    assert lib.rl_pool__create(64, 12, out) == 0
    yield out[0]
    lib.rl_pool__destroy(out[0])


def accounted(pool: Any, owners: range) -> int:
    """free + frames of every owner: must always equal the total."""
    return int(pool.top) + sum(int(lib.rl_pool_count_owner(pool, o)) for o in owners)


def test_pool_is_lifo_and_o1_with_owner_accounting(pool: Any) -> None:
    owners = range(1, 10)
    taken = [lib.rl_pool_alloc(pool, 2 + i % 3) for i in range(64)]
    assert len(set(taken)) == 64 and all(a % 4096 == 0 for a in taken)
    assert accounted(pool, owners) == 64
    assert lib.rl_pool_alloc(pool, 2) == lib.RL_POOL_EMPTY  # exhausted: refused, not reused
    assert lib.rl_pool_free(pool, taken[5] + 300) == 0  # any offset inside the frame
    assert lib.rl_pool_alloc(pool, 7) == taken[5]  # LIFO: the warm frame comes back first
    assert accounted(pool, owners) == 64


def test_pool_rejects_double_free_and_foreign_addresses(pool: Any) -> None:
    a = lib.rl_pool_alloc(pool, 2)
    assert lib.rl_pool_free(pool, a) == 0
    assert lib.rl_pool_free(pool, a) < 0  # double free
    assert lib.rl_pool_free(pool, 64 * 4096) < 0  # past the UMEM
    assert pool.bad_frees == 2
    assert pool.top == 64  # unchanged by the bad frees
    assert accounted(pool, range(1, 4)) == 64


def test_pool_reclaim_returns_exactly_one_owners_frames(pool: Any) -> None:
    for i in range(30):
        lib.rl_pool_alloc(pool, 5 if i % 2 else 6)
    assert lib.rl_pool_reclaim(pool, 5) == 15
    assert lib.rl_pool_count_owner(pool, 5) == 0
    assert lib.rl_pool_count_owner(pool, 6) == 15
    assert pool.top == 64 - 15
    assert accounted(pool, range(1, 8)) == 64


def test_pool_create_validates() -> None:
    out = ffi.new("struct rl_pool **")
    assert lib.rl_pool__create(0, 12, out) < 0
    assert lib.rl_pool__create(16, 5, out) < 0


def create_errno(**opts: int) -> int:
    """rl_core__create() on an interface that does not exist: -EINVAL when the options are
    refused, -ENODEV when they pass and the interface lookup is next. Nothing is created."""
    name = ffi.new("char[]", b"rl-no-such0")
    o = ffi.new("struct rl_core_opts *")
    o.sz = ffi.sizeof("struct rl_core_opts")
    o.underlay_ifname = name
    o.overlay_mtu = 1450
    for key, value in opts.items():
        setattr(o, key, value)
    out = ffi.new("struct rl_core **")
    return int(lib.rl_core__create(o, out))


@pytest.mark.parametrize(("interval", "ok"), [
    (0, True), (lib.RL_PROBE_INTERVAL_MIN_MS, True), (lib.RL_PROBE_INTERVAL_MAX_MS, True),
    (lib.RL_PROBE_OFF, True), (lib.RL_PROBE_INTERVAL_MIN_MS - 1, False),
    (lib.RL_PROBE_INTERVAL_MAX_MS + 1, False),
])
def test_probe_interval_is_validated(interval: int, ok: bool) -> None:
    assert create_errno(probe_interval_ms=interval) == (-errno.ENODEV if ok else -errno.EINVAL)


def test_core_options_grow_by_their_size_field() -> None:
    """A caller built before probe_interval_ms was appended passes the shorter size and gets
    the defaults for what it does not know; any other size is refused."""
    v1 = ffi.offsetof("struct rl_core_opts", "probe_interval_ms")
    full = ffi.sizeof("struct rl_core_opts")
    assert create_errno(sz=v1, probe_interval_ms=1) == -errno.ENODEV  # not read: default
    assert create_errno(sz=v1 - 1) == -errno.EINVAL
    assert create_errno(sz=full + 8) == -errno.EINVAL

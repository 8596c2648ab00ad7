"""The data plane: copies and reductions element by element, float16 rounding, snapshots, limits."""
import numpy as np
import pytest

from collsim.engine.core import COPY, REDUCE, Engine, ScriptedSchedule
from collsim.engine.data import DataPlane, physical_memory_bytes
from collsim.errors import ConfigError
from topologies.model import ChipSpec, Cluster, Fabric, Level, LinkSpec, ScaleOut, Topology
from topologies.routing import Router

GBPS = 10**9
DTYPES = ["float32", "float16", "int32"]


def ring_router(n=4):
    level = Level("ring", n, Fabric.ring, LinkSpec(GBPS, 1_000))
    return Router(Cluster(Topology("t", ChipSpec(GBPS, 0), (level,), ScaleOut(1, LinkSpec(GBPS, 0))), 1))


def setup(dtype, chips=4, count=10):
    data = DataPlane(chips, count, dtype)
    engine = Engine(ring_router(chips), GBPS, data.elem_bytes, data)
    return data, engine


def fill(data, dtype):
    """Chip c, element i holds a distinct, exactly representable value."""
    c, i = np.indices(data.buffers.shape)
    data.buffers[:] = (100 * c + i + 1).astype(dtype)
    return data.buffers.copy()


@pytest.mark.parametrize("dtype", DTYPES)
def test_copy_element_by_element(dtype):
    data, engine = setup(dtype)
    before = fill(data, dtype)
    engine.run(ScriptedSchedule([0], [3], [5], offset=[2], op=[COPY]))
    after = data.buffers
    assert after.dtype == np.dtype(dtype) and after.shape == (4, 10)
    for c in range(4):
        for i in range(10):
            expected = before[0, i] if (c == 3 and 2 <= i < 7) else before[c, i]
            assert after[c, i] == expected, (c, i)
    assert data.in_flight == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_reduce_element_by_element(dtype):
    data, engine = setup(dtype)
    before = fill(data, dtype)
    # 1 -> 2 adds elements [0, 10); 0 -> 2 then adds [4, 6)
    engine.run(ScriptedSchedule([1, 0], [2, 2], [10, 2], offset=[0, 4], op=[REDUCE, REDUCE]))
    for i in range(10):
        # values are small integers: exact in every dtype
        expected = (201 + i) + (101 + i) + ((1 + i) if 4 <= i < 6 else 0)
        assert data.buffers[2, i] == expected, i
    for c in (0, 1, 3):
        assert np.array_equal(data.buffers[c], before[c])


def test_int32_reduction_wraps_like_numpy():
    data, engine = setup("int32", count=3)
    data.buffers[0] = [2**31 - 1, -(2**31), 7]
    data.buffers[1] = [1, -1, -7]
    engine.run(ScriptedSchedule([0], [1], [3], op=[REDUCE]))
    assert data.buffers[1].tolist() == [-(2**31), 2**31 - 1, 0]


def float16_pairs():
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2**16, size=(2, 200_000), dtype=np.uint16)
    values = bits.view(np.float16)
    values[~np.isfinite(values)] = np.float16(65504)          # keep NaN payloads out of the bit compare
    # sums that overflow to inf, subnormals, an exact tie (2048 + 1 rounds to even), signed zeros
    special = np.array([[65504, 1e-7, 2048, 0.1, -0.0, 6e-8],
                        [65504, 1e-7, 1, 0.2, 0.0, -6e-8]], dtype=np.float16)
    return np.concatenate([special, values], axis=1)


@pytest.mark.parametrize("piece", [None, 7])
def test_float16_rounding_matches_numpy_addition(piece):
    # piece None: one long reduction (8-lane path); 7: short pieces (element-by-element path)
    values = float16_pairs()
    n = values.shape[1]
    data = DataPlane(2, n, "float16")
    data.buffers[:] = values
    step = piece or n
    for off in range(0, n, step):
        cnt = min(step, n - off)
        data.apply_py(data.snapshot_py(0, off, cnt), 1, off, cnt, True)
    with np.errstate(over="ignore"):
        expected = values[1] + values[0]
    assert np.array_equal(data.buffers[1].view(np.uint16), expected.view(np.uint16))
    assert data.buffers[1][0] == np.inf and data.buffers[1][2] == np.float16(2048)


def test_float32_reduction_matches_numpy_addition():
    rng = np.random.default_rng(5)
    values = (rng.standard_normal((2, 50_000)) * 10.0 ** rng.integers(-30, 30, (2, 50_000))).astype(np.float32)
    data = DataPlane(2, values.shape[1], "float32")
    data.buffers[:] = values
    data.apply_py(data.snapshot_py(0, 0, values.shape[1]), 1, 0, values.shape[1], True)
    assert np.array_equal(data.buffers[1].view(np.uint32), (values[1] + values[0]).view(np.uint32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_payload_is_snapshot_at_send_time(dtype):
    data, engine = setup(dtype, count=4)
    before = fill(data, dtype)
    # A: 0 -> 2 (two hops, 4 elements of payload) leaves at t = 0 and arrives at 2 * 1,000 + ser;
    # B: 1 -> 0 overwrites chip 0 (one hop) and is delivered earlier, while A is in flight;
    # C: 0 -> 3 leaves after B's delivery, so it carries B's values.
    sizes = [4, 4, 4]
    s = ScriptedSchedule([0, 1, 0], [2, 0, 3], sizes, after=[-1, -1, 1])
    engine.run(s)
    assert s.delivered_ps[1] < s.delivered_ps[0]
    assert s.sent_ps[2] == s.delivered_ps[1]
    assert np.array_equal(data.buffers[2], before[0])      # value at send time, not at delivery
    assert np.array_equal(data.buffers[0], before[1])
    assert np.array_equal(data.buffers[3], before[1])      # forwarded after the update
    assert np.array_equal(data.buffers[1], before[1])


def test_forward_of_received_data_carries_the_update():
    # reduce chain 0 -> 1 -> 2 -> 3, each chip adds its own value and forwards: chip 3 ends with the sum
    data, engine = setup("float32", count=6)
    before = fill(data, "float32")
    engine.run(ScriptedSchedule([0, 1, 2], [1, 2, 3], [6] * 3, op=[REDUCE] * 3, after=[-1, 0, 1]))
    assert np.array_equal(data.buffers[3], before.sum(axis=0))


def test_pool_reuses_slots():
    data, engine = setup("int32", count=8)
    n = 50
    s = ScriptedSchedule(np.arange(n) % 4, (np.arange(n) + 1) % 4, np.full(n, 8), after=np.arange(n) - 1)
    engine.run(s)
    # a chain has one payload in flight at a time
    assert data.peak_slots == 1 and data.in_flight == 0
    engine.run(ScriptedSchedule(np.arange(n) % 4, (np.arange(n) + 1) % 4, np.full(n, 8)))
    assert data.peak_slots == n and data.in_flight == 0


def test_slice_outside_buffer_is_refused():
    data, engine = setup("float32", count=8)
    with pytest.raises(RuntimeError, match="slice"):
        engine.run(ScriptedSchedule([0], [1], [5], offset=[4]))


def test_engine_and_data_plane_must_agree():
    with pytest.raises(ValueError):
        Engine(ring_router(4), GBPS, 4, DataPlane(5, 4, "float32"))
    with pytest.raises(ValueError):
        Engine(ring_router(4), GBPS, 2, DataPlane(4, 4, "float32"))


def test_unsupported_dtype_is_a_config_error():
    for bad in ("float64", "bfloat16", "int8", 3):
        with pytest.raises(ConfigError) as err:
            DataPlane(4, 4, bad)
        assert err.value.field == "dtype"


def test_buffer_larger_than_memory_budget_is_refused():
    # 4 chips x 100 float32 x 2 = 3,200 bytes; the budget is 40% of memory
    DataPlane(4, 100, "float32", memory_bytes=8_000)            # 3,200 <= 3,200
    with pytest.raises(ConfigError) as err:
        DataPlane(4, 100, "float32", memory_bytes=7_999)        # 3,200 > 3,199.6
    assert err.value.field == "sizes.max"
    # against the machine's real memory: 1M chips x 1G elements never fits
    assert physical_memory_bytes() > 0
    with pytest.raises(ConfigError) as err:
        DataPlane(1_000_000, 10**9, "float16")
    assert err.value.field == "sizes.max" and "fidelity=event" in err.value.message


def test_empty_buffers():
    data, engine = setup("float16", count=0)
    s = ScriptedSchedule([0], [1], [0])
    assert engine.run(s) == 1_000                   # latency only
    assert data.buffers.shape == (4, 0)

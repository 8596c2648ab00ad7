"""Calibrated defaults reproduce the single-node measurements they came from (calibration.md)."""
import pytest

from collsim.calibration import CASES, simulate_case


@pytest.mark.parametrize("case", [c for c in CASES if c.case == "B1"], ids=lambda c: c.description)
def test_h100_ring_busbw_within_two_percent_of_nccl_tests(case):
    # calibration.md B1: NCCL ring (no NVLS) on an H100 node, measured busbw 361.4 .. 367.2 GB/s
    row = simulate_case(case)
    assert row.simulated_busbw == pytest.approx(case.measured_busbw, rel=0.02)


def test_h100_small_all_reduce_floor():
    # calibration.md B2: 8 B all-reduce in 13.67 us; collsim: 6.6 us launch + 14 ring steps x 0.6 us = 15.0 us
    (case,) = [c for c in CASES if c.case == "B2" and c.size_bytes == 8]
    row = simulate_case(case)
    assert row.simulated_us == pytest.approx(15.0, abs=0.01)
    assert row.simulated_us == pytest.approx(case.measured_us, rel=0.10)

"""Unit parsing (DESIGN.md section 2): exact conversions and one clear error per bad input."""
import pytest

from collsim.errors import ConfigError
from collsim.units import format_size, parse_bandwidth, parse_size, parse_time, serialization_ps


@pytest.mark.parametrize(
    "text, expected",
    [("1KiB", 1024), ("64MiB", 64 * 2**20), ("1GiB", 2**30), ("1GB", 10**9), ("1.5kB", 1500), ("0B", 0), ("8B", 8)],
)
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [("256GB/s", 256 * 10**9), ("200Gbps", 25 * 10**9), ("1GiB/s", 2**30), ("100Gbit/s", 125 * 10**8), ("0.1GB/s", 10**8)],
)
def test_bandwidths_in_bytes_per_second(text, expected):
    assert parse_bandwidth(text) == expected


@pytest.mark.parametrize("text, expected", [("1.5us", 1_500_000), ("15us", 15_000_000), ("1ns", 1000), ("2ms", 2 * 10**9), ("0.3us", 300_000), ("7ps", 7)])
def test_times_in_picoseconds(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    "parser, text, fragment",
    [
        (parse_size, "1024", "bare number"),
        (parse_size, "-1KiB", "must be >= 0"),
        (parse_size, "1.5B", "whole number of bytes"),
        (parse_size, "3 furlongs", "unknown size unit"),
        (parse_bandwidth, "0GB/s", "must be > 0"),
        (parse_bandwidth, "-5Gbps", "must be > 0"),
        (parse_bandwidth, "12", "bare number"),
        (parse_time, "-1us", "must be >= 0"),
        (parse_time, "1.5 hours", "unknown time unit"),
        (parse_time, "fast", "cannot parse"),
    ],
)
def test_bad_quantities_name_the_field(parser, text, fragment):
    with pytest.raises(ConfigError) as err:
        parser(text, "some.field")
    assert err.value.field == "some.field"
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_serialization_is_exact_ceiling():
    # 1000 bytes at 3 B/s: 333.33... s -> ceil to the picosecond
    assert serialization_ps(1000, 3) == 333_333_333_333_334
    assert serialization_ps(256 * 10**9, 256 * 10**9) == 10**12
    assert serialization_ps(0, 7) == 0
    # 1 GiB at 230.4 GB/s (256 GB/s x 0.9): 1073741824e12 / 230.4e9 = 4660337.777... us
    assert serialization_ps(2**30, 230_400_000_000) == 4_660_337_778


def test_format_size():
    assert [format_size(s) for s in (2**30, 3 * 2**20, 1024, 1000)] == ["1GiB", "3MiB", "1KiB", "1000B"]

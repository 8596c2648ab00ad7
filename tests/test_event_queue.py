"""The engine's event queue (collsim/engine/events.pyx, a radix heap with an explicit top).

Whatever the structure, the contract is that of a priority queue over the key
(time, tie): every pop and every replaced top is the smallest pending event.
The model here is a sorted Python list driven by the same operations, including
the case the radix heap treats apart: pushes below the last key served (a chip
delivering at time t sends at time t with a smaller tie than the event just
served).
"""
from hypothesis import given, settings
from hypothesis import strategies as st

from collsim.engine.events import _queue_ops


def model(ops):
    """What a priority queue must serve for ops (same encoding as _queue_ops)."""
    pending, out, pushed = [], [], 0
    for op in ops:
        if op[0] == "push":
            pending.append((op[1], op[2], pushed))
            pushed += 1
        elif op[0] == "pop":
            pending.sort()
            out.append(pending.pop(0))
        else:
            pending.sort()
            t, k, slot = pending.pop(0)
            out.append((t, k, slot))
            pending.append((op[1], k, slot))
    return out


@st.composite
def op_sequences(draw):
    """Valid operation lists: pop/replace only when something is pending; unique ties.

    Times stay close together (many equal times, as in lockstep collectives) and
    ties span the whole 64-bit range, so keys differ in every bit position.
    """
    n_ops = draw(st.integers(0, 250))
    ties = draw(st.lists(st.integers(0, 2**64 - 1), min_size=n_ops, max_size=n_ops, unique=True))
    big = draw(st.booleans())            # times far apart too: high buckets
    ops, pending = [], 0
    for i in range(n_ops):
        kind = draw(st.sampled_from(["push", "push", "pop", "replace"])) if pending else "push"
        t = draw(st.integers(0, 2**62 if big else 12))
        if kind == "push":
            ops.append(("push", t, ties[i]))
            pending += 1
        elif kind == "pop":
            ops.append(("pop",))
            pending -= 1
        else:
            ops.append(("replace", t))
    ops += [("pop",)] * pending
    return ops


@settings(max_examples=300, deadline=None)
@given(op_sequences())
def test_queue_serves_the_smallest_key_first(ops):
    assert _queue_ops(ops) == model(ops)


def test_push_below_the_last_key_served_comes_out_next():
    # serve (5, tie 9), then push (5, tie 2): it precedes (5, tie 10) and (7, 0)
    ops = [("push", 5, 9), ("push", 5, 10), ("push", 7, 0), ("pop",), ("push", 5, 2),
           ("pop",), ("pop",), ("pop",)]
    assert _queue_ops(ops) == [(5, 9, 0), (5, 2, 3), (5, 10, 1), (7, 0, 2)]


def test_replace_top_moves_the_message_to_its_next_event():
    # the top (1, tie 4, slot 0) is replaced by time 3: it now comes after (2, tie 8)
    ops = [("push", 1, 4), ("push", 2, 8), ("replace", 3), ("pop",), ("pop",)]
    assert _queue_ops(ops) == [(1, 4, 0), (2, 8, 1), (3, 4, 0)]


def test_many_equal_times_come_out_by_tie():
    ties = [(i * 7919) % 1000 for i in range(1000)]          # a permutation of 0..999
    ops = [("push", 42, k) for k in ties] + [("pop",)] * 1000
    assert [k for _, k, _ in _queue_ops(ops)] == list(range(1000))

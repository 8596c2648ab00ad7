"""Hierarchical collectives in C: the self-timed event schedule.

See collectives/hierarchical.py for the algorithm, the data layout, the
formulas and when the event time equals the analytic one.

How a chip proceeds
-------------------
Every chip walks each of its pieces (chunk j, channel ch) through the phases
in order.  Entering phase p at time E it sends what the phase starts with
(ring: step 0; mesh: every part at once; tree: a leaf's reduction) at E, then
reacts to arrivals:

* ring reduce-scatter: a part arriving with step s is reduced
  (``engine.reduce``, not before E) and, unless s was the last step, sent on
  as step s + 1 when the reduction is done;
* ring all-gather: a part arriving with step s is sent on at once;
* mesh: arrivals are reduced (RS) or just counted (AG);
* tree: a parent reduces its children's halves then sends up; the root
  broadcasts down; a chip forwards a broadcast to its children on arrival.

The phase is over when every transfer the chip must receive has been handled
(its own part is reduced / every part gathered).  A phase takes the pieces of
a channel one at a time, in chunk order (``ph_next``): piece j enters phase p
when it has finished phase p-1 and piece j-1 has left phase p on this chip
(``_release``; older pieces send first).  After the last phase the piece is
done, and the chip starts piece j + in_flight of the same channel.

Neighbours may run ahead: a transfer can arrive for a phase the chip has not
entered yet.  Arrivals from one sender in one phase come in step order (same
path, FIFO links), so a counter per phase (``_early``) is all the chip keeps;
on entering the phase it handles them as if they arrived at E.  A chip only
ever sees pieces j - F + 1 .. j + F of a channel while it works on piece j
(a piece finishes only once every chip has started it), so ``min(2F, k)``
slots per (chip, channel) suffice.

Empty parts (few elements) are never sent; the receiver knows which parts are
empty (all parts are computed from the same split) and skips those steps.

State is one 64-byte record per (chip, channel, slot) (up to 8 phases) and a
32-bit chunk gate per (chip, channel, phase); no list of sends ever exists.
"""
import numpy as np

from libc.stdint cimport int64_t, int32_t, int8_t, uint16_t, uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from collsim.engine.core cimport OP_COPY, OP_REDUCE
from collsim.engine.intmath cimport int_max as _max, wrap_once as _wrap


cdef extern from "hugepages.h" nogil:
    void* collsim_alloc_lines(size_t nbytes)      # cache-line aligned, huge pages when large

cdef extern from *:
    void __builtin_prefetch(const void* address) nogil


cdef enum:
    CACHE_LINE = 64


cdef inline uint16_t* _early(Stream* st) noexcept nogil:
    """The stream's early-arrival counters, one per phase, right after its record."""
    return <uint16_t*> (<char*> st + sizeof(Stream))


cdef inline int64_t _part_len(const Stream* st, int64_t x) noexcept nogil:
    """Elements of part x of the stream's slice (all_reduce layout: larger parts first)."""
    return st.part_len + (1 if x < st.part_extra else 0)


cdef inline int64_t _part_bytes(const Stream* st, const Phase* ph, int64_t x) noexcept nogil:
    """Bytes of part x of the stream's current phase (strided: all its runs; part_extra is 0 there)."""
    return (st.part_len + (1 if x < st.part_extra else 0)) * ph.part_scale


cdef inline int64_t _part_off(const Stream* st, int64_t x) noexcept nogil:
    """First element of part x of the stream's slice (all_reduce layout)."""
    return st.off + x * st.part_len + (x if x < st.part_extra else st.part_extra)


cdef inline void _reset_stream(Stream* st, int64_t n_phases) noexcept nogil:
    """Before a piece starts: no phase entered, not waiting, no early arrivals."""
    memset(st, 0, sizeof(Stream) + n_phases * sizeof(uint16_t))
    st.phase = -1


cdef inline void _tree_finished_at(Stream* st, int64_t t_ps) noexcept nogil:
    """One of the two trees has finished on this chip at t_ps (the phase ends with the later one)."""
    st.remaining -= 1
    st.last_ps = _max(st.last_ps, t_ps)


cdef inline void _split(int64_t off, int64_t length, int64_t parts, int64_t x,
                        int64_t* part_off, int64_t* part_len) noexcept nogil:
    """Part x of split_counts(length, parts) laid out from off (larger parts first)."""
    cdef int64_t base = length // parts, extra = length % parts
    part_len[0] = base + (1 if x < extra else 0)
    part_off[0] = off + x * base + (x if x < extra else extra)


cdef inline int64_t _next_recv_step(int64_t v, int64_t g, int64_t m, int64_t lag, int64_t s) noexcept nogil:
    """First ring step >= s at which virtual position v receives a non-empty part, -1 if none.

    At step s position v receives part (v - lag - s) mod g (lag 2: reduce-
    scatter, 1: all-gather); parts >= m are empty.  Each step lowers the part
    index by one, so from a part u >= m it takes u - m + 1 steps to reach m - 1.
    """
    if s > g - 2:
        return -1  # (and keeps v - lag - s >= -g for _wrap)
    cdef int64_t u = _wrap(v - lag - s, g)
    if u >= m:
        s += u - m + 1
    return s if s <= g - 2 else -1


def next_recv_step(int64_t v, int64_t g, int64_t m, int64_t lag, int64_t s):
    """Python access to ``_next_recv_step`` (tests)."""
    if g < 2 or m < 1 or not 0 <= v < g:
        raise ValueError("need g >= 2, m >= 1 and 0 <= v < g")
    return _next_recv_step(v, g, m, lag, s)


cdef class HierarchicalSchedule(Schedule):
    """Event schedule of the hierarchical collectives; built by ``collectives.hierarchical.make_schedule``.

    After ``Engine.run``: ``makespan_ps`` (latest piece completion on the chips
    this process simulates; for reduce-scatter the end of the last reduction)
    and ``pieces_done`` (completed (chip, piece) pairs).
    """

    def __init__(self, int64_t n_chips, int64_t nodes, int64_t total, bint strided, int64_t chunks,
                 int64_t channels, int64_t in_flight, bint bidirectional, int64_t n_up,
                 ph_kind, ph_level, lv_size, lv_weight, lv_mesh, lv_order_off, order_unit, order_pos,
                 tree_parent, tree_child):
        self.sender_reacts = False  # deliver() acts for msg.dst only (no copy to the sender's MPI rank)
        if n_chips < 1 or nodes < 1 or total < 0 or chunks < 1 or channels < 1 or in_flight < 1:
            raise ValueError("need n_chips, nodes, chunks, channels, in_flight >= 1 and total >= 0")
        self.n_chips = n_chips
        self.nodes = nodes
        self.total = total
        self.strided = strided
        self.chunks = chunks
        self.channels = channels
        self.in_flight = in_flight
        self.slots = min(2 * in_flight, chunks)
        self.bidirectional = bidirectional
        self.n_up = n_up
        kinds = np.ascontiguousarray(ph_kind, dtype=np.int64)
        phase_levels = np.ascontiguousarray(ph_level, dtype=np.int64)
        sizes = np.ascontiguousarray(lv_size, dtype=np.int64)
        weights = np.ascontiguousarray(lv_weight, dtype=np.int64)
        meshes = np.ascontiguousarray(lv_mesh, dtype=np.int64)
        order_offs = np.ascontiguousarray(lv_order_off, dtype=np.int64)
        self.n_phases = kinds.shape[0]
        self.n_levels = sizes.shape[0]
        if phase_levels.shape[0] != self.n_phases:
            raise ValueError("ph_kind and ph_level differ in length")
        if not weights.shape[0] == meshes.shape[0] == order_offs.shape[0] == self.n_levels:
            raise ValueError("lv_size, lv_weight, lv_mesh and lv_order_off differ in length")
        if n_chips >= 2**32 or chunks >= 2**32:
            raise ValueError("chip ids and chunk indices must fit 32 bits (divisions by multiplication)")
        if self.n_phases > 127:
            raise ValueError(f"{self.n_phases} phases: at most 127 (a slot keeps its phase in 8 bits)")
        for i in range(self.n_phases):
            if kinds[i] != KIND_TREE_AR and 0 <= phase_levels[i] < self.n_levels and sizes[phase_levels[i]] > 2**16:
                raise ValueError(f"phase {i}: a ring or mesh of {sizes[phase_levels[i]]:,} units; at most 2**16 "
                                 "(a slot counts its transfers in 16 bits)")
        free(self.phases)  # (a second __init__ replaces the tables)
        free(self.levels)
        self.phases = <Phase*> malloc(max(1, self.n_phases) * sizeof(Phase))
        self.levels = <Level*> malloc(max(1, self.n_levels) * sizeof(Level))
        if self.phases == NULL or self.levels == NULL:
            raise MemoryError("hierarchical schedule: phase and level tables")
        for i in range(self.n_levels):
            if sizes[i] < 1 or weights[i] < 1 or n_chips % (weights[i] * sizes[i]) != 0:
                raise ValueError(f"level {i}: size {sizes[i]} x weight {weights[i]} does not divide {n_chips} chips")
            self.levels[i].size = sizes[i]
            self.levels[i].weight = weights[i]
            self.levels[i].order_off = order_offs[i]
            self.levels[i].runs = n_chips // (weights[i] * sizes[i])
            self.levels[i].weight_div = collsim_fastdiv_make(<uint32_t> weights[i])
            self.levels[i].size_div = collsim_fastdiv_make(<uint32_t> sizes[i])
            self.levels[i].mesh = meshes[i] != 0
        for i in range(self.n_phases):
            if not 0 <= phase_levels[i] < self.n_levels:
                raise ValueError(f"phase {i}: no level {phase_levels[i]}")
            self.phases[i].kind = kinds[i]
            self.phases[i].level = phase_levels[i]
            self.phases[i].size = sizes[phase_levels[i]]
            self.phases[i].last_step = sizes[phase_levels[i]] - 2
            self.phases[i].part_scale = 0  # start() knows the element size
            self.phases[i].reduces = kinds[i] == KIND_RING_RS or kinds[i] == KIND_MESH_RS
            self.phases[i].lag = 2 if kinds[i] == KIND_RING_RS else 1
            self.phases[i].op = OP_REDUCE if self.phases[i].reduces else OP_COPY
            self.phases[i].narrows = (not strided and i > 0 and kinds[i - 1] != KIND_TREE_AR
                                      and phase_levels[i - 1] == phase_levels[i] - 1)
        self.slots_div = collsim_fastdiv_make(<uint32_t> self.slots)
        self.piece_len = total // (chunks * channels)
        self.piece_extra = total % (chunks * channels)
        self.order_unit = np.ascontiguousarray(order_unit, dtype=np.int64)
        self.order_pos = np.ascontiguousarray(order_pos, dtype=np.int64)
        self.tree_parent = np.ascontiguousarray(tree_parent, dtype=np.int64)
        self.tree_child = np.ascontiguousarray(tree_child, dtype=np.int64)
        self.chip_slots = channels * self.slots
        self.n_streams = n_chips * self.chip_slots
        self.n_ph_next = n_chips * channels * max(1, self.n_phases)
        free(self.ph_next)
        self.ph_next = <uint32_t*> collsim_alloc_lines(self.n_ph_next * sizeof(uint32_t))
        if self.ph_next == NULL:
            raise MemoryError("hierarchical schedule: chunk gates")
        # a record and its early counters, rounded up to whole cache lines
        self.stream_stride = ((sizeof(Stream) + self.n_phases * sizeof(uint16_t) + CACHE_LINE - 1)
                              // CACHE_LINE * CACHE_LINE)
        free(self.streams)
        self.streams = <char*> collsim_alloc_lines(self.n_streams * self.stream_stride)
        if self.streams == NULL:
            raise MemoryError(f"hierarchical schedule: {self.n_streams:,} slot records")
        self.coalesce = False
        self.makespan_ps = 0
        self.pieces_done = 0

    def __cinit__(self):
        self.streams = NULL
        self.ph_next = NULL
        self.phases = NULL
        self.levels = NULL

    def __dealloc__(self):
        free(self.streams)
        free(self.ph_next)
        free(self.phases)
        free(self.levels)

    def state_bytes(self):
        """Bytes of the schedule's per-slot state: the slot records and the per-phase chunk gates."""
        return self.n_streams * self.stream_stride + self.n_ph_next * sizeof(uint32_t)

    cdef inline Stream* _stream(self, int64_t sid) noexcept nogil:
        return <Stream*> (self.streams + sid * self.stream_stride)

    cdef inline int64_t _key(self, int64_t ch, int64_t j) noexcept nogil:
        """Which of a chip's channels x slots records holds piece (j, ch): ch * slots + j % slots.

        Messages carry it (tag3 = 2 * key + last), so a delivery finds its
        record without dividing.
        """
        return ch * self.slots + <int64_t> collsim_fastdiv_mod(j, self.slots_div)

    cdef inline int64_t _channel(self, int64_t key) noexcept nogil:
        return <int64_t> collsim_fastdiv_div(key, self.slots_div)

    cdef inline Stream* _slot(self, int64_t chip, int64_t key) noexcept nogil:
        """Record `key` of chip: sid = chip * channels * slots + key."""
        return self._stream(chip * self.chip_slots + key)

    # --- geometry ------------------------------------------------------------

    cdef void _piece(self, int64_t j, int64_t ch, int64_t* off, int64_t* length) noexcept nogil:
        """Piece (j, ch): all_reduce: a buffer range; strided: a range inside every block."""
        cdef int64_t x = j * self.channels + ch
        length[0] = self.piece_len + (1 if x < self.piece_extra else 0)
        off[0] = x * self.piece_len + (x if x < self.piece_extra else self.piece_extra)

    cdef inline int64_t _digit(self, int64_t chip, int64_t lt) noexcept nogil:
        cdef const Level* lv = &self.levels[lt]
        return <int64_t> collsim_fastdiv_mod(collsim_fastdiv_div(chip, lv.weight_div), lv.size_div)

    cdef inline bint _reversed(self, int64_t lt, int64_t ch) noexcept nogil:
        """Odd channels run rings backwards when bidirectional (a mesh has no direction)."""
        return self.bidirectional and (ch & 1) == 1 and not self.levels[lt].mesh

    cdef inline int64_t _own_part(self, int64_t chip, int64_t lt, int64_t ch) noexcept nogil:
        """Index of the part this chip keeps at level lt: its virtual ring position (mesh: its unit)."""
        cdef const Level* lv = &self.levels[lt]
        cdef int64_t unit = self._digit(chip, lt), pos
        if lv.mesh:
            return unit
        pos = unit if lv.order_off < 0 else self.order_pos[lv.order_off + unit]
        return _wrap(-pos, lv.size) if self._reversed(lt, ch) else pos

    cdef inline int64_t _chip_of_part(self, int64_t chip, int64_t lt, int64_t ch, int64_t x) noexcept nogil:
        """The chip of chip's level-lt group that keeps part x (x = virtual ring position, mesh: unit)."""
        cdef const Level* lv = &self.levels[lt]
        cdef int64_t unit = x, pos
        if not lv.mesh:
            pos = _wrap(-x, lv.size) if self._reversed(lt, ch) else x
            unit = pos if lv.order_off < 0 else self.order_unit[lv.order_off + pos]
        return chip + (unit - self._digit(chip, lt)) * lv.weight

    cdef inline void _range(self, int64_t chip, int64_t ch, int64_t j, int64_t depth,
                     int64_t* off, int64_t* length) noexcept nogil:
        """Data the chip holds for piece (j, ch) on entering level ``depth``.

        all_reduce: the piece's range narrowed to the chip's own part at each
        level below; strided layout: the piece itself (its runs are implied).
        """
        cdef int64_t lt
        self._piece(j, ch, off, length)
        if self.strided:
            return
        for lt in range(depth):
            _split(off[0], length[0], self.levels[lt].size, self._own_part(chip, lt, ch), off, length)

    cdef inline void _entry_range(self, const Stream* st, int64_t chip, int64_t ch, int64_t j, int64_t p,
                                  int64_t* off, int64_t* length) noexcept nogil:
        """``_range`` for entering phase p, st still holding phase p - 1 (finished).

        Going down the levels (reduce-scatter side, and the tree after it) the
        range is the own part of phase p - 1's cut, which the stream keeps:
        no walk over the levels below, no division.  Else ``_range``.
        """
        if self.phases[p].narrows:
            off[0] = _part_off(st, st.pos)
            length[0] = _part_len(st, st.pos)
        else:
            self._range(chip, ch, j, self.phases[p].level, off, length)

    cdef inline int64_t _parts(self, int64_t length, int64_t g) noexcept nogil:
        """Non-empty parts: parts 0..m-1 (split_counts puts the larger parts first)."""
        if self.strided:
            return g
        return length if length < g else g

    cdef inline void _send_part(self, Engine engine, const Stream* st, int64_t src, int64_t dst, int64_t t_ps,
                                int64_t p, int64_t step, int64_t j, int64_t key, int32_t op, int64_t lt,
                                int64_t x) noexcept nogil:
        """Send part x of the stream's level-lt split as one transfer (all_reduce: one message)."""
        if self.strided:
            self._send_runs(engine, st, src, dst, t_ps, p, step, j, key, op, lt, x)
        else:
            engine.send(src, dst, t_ps, _part_off(st, x), _part_len(st, x), op, p, step, j, 2 * key + 1)

    cdef void _send_runs(self, Engine engine, const Stream* st, int64_t src, int64_t dst, int64_t t_ps,
                         int64_t p, int64_t step, int64_t j, int64_t key, int32_t op, int64_t lt,
                         int64_t x) noexcept nogil:
        """Strided layout: part x holds the blocks whose level-<lt digits are the
        sender's and whose level-lt digit is x's unit, i.e. R runs of the piece
        at stride g_0...g_lt blocks, one message each (one in all when coalescing).
        The receiver acts on the last message.
        """
        cdef const Level* lv = &self.levels[lt]
        cdef int64_t off = st.off, length = st.part_len, g = lv.size, w = lv.weight, runs = lv.runs
        cdef int64_t stride = w * g, base, unit, pos, r
        if self.coalesce:
            engine.send(src, dst, t_ps, 0, runs * length, op, p, step, j, 2 * key + 1)
            return
        unit = x
        if not lv.mesh:
            pos = _wrap(-x, g) if self._reversed(lt, self._channel(key)) else x
            unit = pos if lv.order_off < 0 else self.order_unit[lv.order_off + pos]
        # src's offset inside its unit, src % w, without a division
        base = src - <int64_t> collsim_fastdiv_div(src, lv.weight_div) * w + unit * w
        for r in range(runs):
            engine.send(src, dst, t_ps, (base + r * stride) * self.total + off, length, op, p, step, j,
                        2 * key + (1 if r == runs - 1 else 0))

    # --- ring phases ---------------------------------------------------------

    cdef inline void _open_stream(self, Stream* st, int64_t p, int64_t entry_ps, int64_t off,
                                  int64_t length, int64_t parts, int64_t pos) noexcept nogil:
        """The stream enters phase p at entry_ps on slice [off, off + length), cut in ``parts``, as part ``pos``.

        The cut is made here, once per phase, so that deliveries size parts
        without dividing.  Strided layout: every part is R runs of the piece.
        """
        st.phase = <int8_t> p
        st.entry_ps = entry_ps
        st.last_ps = entry_ps
        st.off = off
        if self.strided:
            st.part_len = length
            st.part_extra = 0
        else:
            st.part_len = length // parts
            st.part_extra = <uint16_t> (length % parts)
        st.pos = <uint16_t> pos

    cdef int64_t _enter_ring(self, Engine engine, int64_t chip, int64_t ch, int64_t j, int64_t key, int64_t p,
                             Stream* st, int64_t entry_ps) noexcept nogil:
        cdef const Phase* ph = &self.phases[p]
        cdef int64_t lt = ph.level, g = self.levels[lt].size, lag = ph.lag
        cdef int64_t off, length, m, v, first, i, s, early
        self._entry_range(st, chip, ch, j, p, &off, &length)
        m = self._parts(length, g)
        v = self._own_part(chip, lt, ch)
        self._open_stream(st, p, entry_ps, off, length, g, v)
        st.peer = <uint32_t> self._chip_of_part(chip, lt, ch, _wrap(v + 1, g))
        # step 0 starts the chain of the one part this chip never receives
        first = _wrap(v - lag + 1, g)
        st.remaining = <uint16_t> (m - (1 if first < m else 0))
        if first < m:
            self._send_part(engine, st, chip, st.peer, entry_ps, p, 0, j, key, ph.op, lt, first)
        early = _early(st)[p]
        s = 0
        for i in range(early):
            s = _next_recv_step(v, g, m, lag, s)
            self._ring_recv(engine, ph, chip, j, key, p, st, s, entry_ps)
            s += 1
        if st.remaining == 0:
            return st.last_ps
        return -1

    cdef inline void _ring_recv(self, Engine engine, const Phase* ph, int64_t chip, int64_t j, int64_t key,
                                int64_t p, Stream* st, int64_t step, int64_t t_ps) noexcept nogil:
        """The part of ring step ``step`` of phase p (= ph) has arrived (at t_ps, or before the phase entry)."""
        cdef int64_t ready = _max(t_ps, st.entry_ps)
        cdef int64_t x = _wrap(st.pos - ph.lag - step, ph.size)
        if ph.reduces:
            ready = engine.reduce(chip, ready, _part_bytes(st, ph, x))
        if step < ph.last_step:
            self._send_part(engine, st, chip, st.peer, ready, p, step + 1, j, key, ph.op, ph.level, x)
        st.last_ps = _max(st.last_ps, ready)
        st.remaining -= 1

    # --- mesh phases (direct fabric) -------------------------------------------

    cdef int64_t _enter_mesh(self, Engine engine, int64_t chip, int64_t ch, int64_t j, int64_t key, int64_t p,
                             Stream* st, int64_t entry_ps) noexcept nogil:
        cdef const Phase* ph = &self.phases[p]
        cdef int64_t lt = ph.level, g = self.levels[lt].size
        cdef bint rs = ph.reduces
        cdef int64_t off, length, m, u, d, x, i, early
        self._entry_range(st, chip, ch, j, p, &off, &length)
        m = self._parts(length, g)
        u = self._own_part(chip, lt, ch)
        self._open_stream(st, p, entry_ps, off, length, g, u)
        if rs:
            # every other unit's part goes straight to it; own part comes from all g - 1
            for d in range(1, g):
                x = _wrap(u + d, g)
                if x < m:
                    self._send_part(engine, st, chip, self._chip_of_part(chip, lt, ch, x), entry_ps, p, 0, j, key,
                                    OP_REDUCE, lt, x)
            st.remaining = <uint16_t> ((g - 1) if u < m else 0)
        else:
            if u < m:
                for d in range(1, g):
                    self._send_part(engine, st, chip, self._chip_of_part(chip, lt, ch, _wrap(u + d, g)), entry_ps,
                                    p, 0, j, key, OP_COPY, lt, u)
            st.remaining = <uint16_t> (m - (1 if u < m else 0))
        early = _early(st)[p]
        for i in range(early):
            self._mesh_recv(engine, ph, chip, st, entry_ps)
        if st.remaining == 0:
            return st.last_ps
        return -1

    cdef inline void _mesh_recv(self, Engine engine, const Phase* ph, int64_t chip, Stream* st,
                                int64_t t_ps) noexcept nogil:
        """A part for this chip's own unit has arrived (RS: reduce it; AG: count it)."""
        cdef int64_t ready = _max(t_ps, st.entry_ps)
        if ph.reduces:
            ready = engine.reduce(chip, ready, _part_bytes(st, ph, st.pos))
        st.last_ps = _max(st.last_ps, ready)
        st.remaining -= 1

    # --- double binary tree across nodes (all_reduce, top=tree) ------------------

    cdef int64_t _enter_tree(self, Engine engine, int64_t chip, int64_t ch, int64_t j, int64_t key, int64_t p,
                             Stream* st, int64_t entry_ps) noexcept nogil:
        cdef int64_t lt = self.phases[p].level
        cdef int64_t node = <int64_t> collsim_fastdiv_div(chip, self.levels[lt].weight_div)
        cdef int64_t off, length, half_len, t, nch, i, ready
        self._entry_range(st, chip, ch, j, p, &off, &length)
        st.phase = <int8_t> p
        st.entry_ps = entry_ps
        # tree t carries half t of the range (all_reduce only: never strided)
        st.off = off
        st.part_len = length >> 1
        st.part_extra = <uint16_t> (length & 1)
        st.remaining = 2
        st.last_ps = 0  # (times are >= 0: the max over the trees' finishing times)
        for t in range(2):
            half_len = _part_len(st, t)
            if half_len == 0:
                _tree_finished_at(st, entry_ps)
                continue
            nch = ((1 if self.tree_child[(t * self.nodes + node) * 2] >= 0 else 0)
                   + (1 if self.tree_child[(t * self.nodes + node) * 2 + 1] >= 0 else 0))
            ready = entry_ps
            for i in range(st.tree_up[t]):
                ready = engine.reduce(chip, entry_ps, half_len * engine.elem_bytes)
            if st.tree_up[t] == nch:
                self._tree_up_done(engine, chip, j, key, p, st, t, ready)
        return st.last_ps if st.remaining == 0 else -1

    cdef void _tree_up_done(self, Engine engine, int64_t chip, int64_t j, int64_t key, int64_t p,
                            Stream* st, int64_t t, int64_t ready_ps) noexcept nogil:
        """Tree t's half is reduced over this chip's subtree: send it up, or (root) broadcast it."""
        cdef int64_t lt = self.phases[p].level, per_node = self.levels[lt].weight
        cdef int64_t node = <int64_t> collsim_fastdiv_div(chip, self.levels[lt].weight_div)
        cdef int64_t half_off = _part_off(st, t), half_len = _part_len(st, t), i, child
        cdef int64_t parent = self.tree_parent[t * self.nodes + node]
        if parent >= 0:
            engine.send(chip, chip + (parent - node) * per_node, ready_ps, half_off, half_len, OP_REDUCE,
                        p, 2 * t, j, 2 * key + 1)
            return
        for i in range(2):
            child = self.tree_child[(t * self.nodes + node) * 2 + i]
            if child >= 0:
                engine.send(chip, chip + (child - node) * per_node, ready_ps, half_off, half_len, OP_COPY,
                            p, 2 * t + 1, j, 2 * key + 1)
        _tree_finished_at(st, ready_ps)

    cdef int64_t _tree_recv(self, Engine engine, const Message* msg, int64_t chip, int64_t j, int64_t key,
                            int64_t p, Stream* st, int64_t t_ps) noexcept nogil:
        """A tree transfer has arrived in the phase the chip is in; returns the phase's completion or -1.

        (Kept out of deliver so that the ring path stays small.)
        """
        cdef int64_t t = msg.tag[1] >> 1, i, child, ready
        cdef const Level* lv = &self.levels[self.phases[p].level]
        cdef int64_t per_node = lv.weight, node = <int64_t> collsim_fastdiv_div(chip, lv.weight_div)
        if msg.tag[1] & 1:
            # broadcast down: pass the half on to this chip's children
            for i in range(2):
                child = self.tree_child[(t * self.nodes + node) * 2 + i]
                if child >= 0:
                    engine.send(chip, chip + (child - node) * per_node, t_ps, msg.elem_offset,
                                msg.elem_count, OP_COPY, p, 2 * t + 1, j, 2 * key + 1)
            _tree_finished_at(st, t_ps)
        else:
            st.tree_up[t] += 1
            ready = engine.reduce(chip, _max(t_ps, st.entry_ps), msg.elem_count * engine.elem_bytes)
            if st.tree_up[t] == ((1 if self.tree_child[(t * self.nodes + node) * 2] >= 0 else 0)
                                 + (1 if self.tree_child[(t * self.nodes + node) * 2 + 1] >= 0 else 0)):
                self._tree_up_done(engine, chip, j, key, p, st, t, ready)
        return st.last_ps if st.remaining == 0 else -1

    # --- pipeline --------------------------------------------------------------

    cdef void _run_from(self, Engine engine, int64_t chip, int64_t ch, int64_t j, int64_t p,
                        int64_t t_ps) noexcept nogil:
        """Piece (j, ch) is ready for phase p at t_ps: enter it, and keep going while phases complete at once.

        A phase takes one piece of a channel at a time, in chunk order: piece j
        waits until piece j - 1 has left the phase on this chip.  Leaving phase
        p lets the next piece in, after this piece's own sends of phase p + 1
        (older chunks go first on a link).
        """
        cdef int64_t done, kind, off, length, key
        cdef Stream* st
        while True:
            key = self._key(ch, j)
            st = self._slot(chip, key)
            if p == self.n_phases:
                self._finish_piece(engine, chip, ch, j, st, t_ps)
                if p > 0:
                    self._release(engine, chip, ch, j, p - 1, t_ps)
                j += self.in_flight
                if j >= self.chunks:
                    return
                self._piece(j, ch, &off, &length)
                if length == 0:
                    return
                p = 0
                continue
            if self.ph_next[(chip * self.channels + ch) * self.n_phases + p] != j:
                # the previous chunk is still in phase p here: wait for its _release
                st.last_ps = t_ps
                st.waiting = 1
                if p > 0:
                    self._release(engine, chip, ch, j, p - 1, t_ps)
                return
            kind = self.phases[p].kind
            if kind == KIND_RING_RS or kind == KIND_RING_AG:
                done = self._enter_ring(engine, chip, ch, j, key, p, st, t_ps)
            elif kind == KIND_MESH_RS or kind == KIND_MESH_AG:
                done = self._enter_mesh(engine, chip, ch, j, key, p, st, t_ps)
            else:
                done = self._enter_tree(engine, chip, ch, j, key, p, st, t_ps)
            if p > 0:
                self._release(engine, chip, ch, j, p - 1, t_ps)
            if done < 0:
                return
            p += 1
            t_ps = done

    cdef void _release(self, Engine engine, int64_t chip, int64_t ch, int64_t j, int64_t p,
                       int64_t t_ps) noexcept nogil:
        """Piece j left phase p at t_ps: piece j + 1 may enter it, at once if it is already waiting."""
        cdef int64_t nxt = j + 1, ready
        cdef Stream* st
        self.ph_next[(chip * self.channels + ch) * self.n_phases + p] = <uint32_t> nxt
        if nxt >= self.chunks:
            return
        st = self._slot(chip, self._key(ch, nxt))
        # waiting for phase p: finished p - 1 (phase == p - 1, or -1 for p == 0) and waiting
        if st.waiting and st.phase == p - 1:
            ready = _max(st.last_ps, t_ps)
            st.waiting = 0
            self._run_from(engine, chip, ch, nxt, p, ready)

    cdef void _finish_piece(self, Engine engine, int64_t chip, int64_t ch, int64_t j, Stream* st,
                            int64_t t_ps) noexcept nogil:
        if t_ps > self.makespan_ps:
            self.makespan_ps = t_ps
        self.pieces_done += 1
        _reset_stream(st, self.n_phases)

    # --- Schedule --------------------------------------------------------------

    cdef void start(self, Engine engine) noexcept nogil:
        cdef int64_t chip, j, ch, first, off, length, i
        self.coalesce = engine.data is None
        for i in range(self.n_phases):
            self.phases[i].part_scale = engine.elem_bytes * (self.levels[self.phases[i].level].runs
                                                             if self.strided else 1)
        self.makespan_ps = 0
        self.pieces_done = 0
        for i in range(self.n_streams):
            _reset_stream(self._stream(i), self.n_phases)
        memset(self.ph_next, 0, self.n_ph_next * sizeof(uint32_t))
        first = self.in_flight if self.in_flight < self.chunks else self.chunks
        for chip in range(self.n_chips):
            for j in range(first):
                for ch in range(self.channels):
                    self._piece(j, ch, &off, &length)
                    if length > 0:
                        self._run_from(engine, chip, ch, j, 0, 0)

    cdef void deliver(self, Engine engine, const Message* msg, int64_t t_ps) noexcept nogil:
        cdef int64_t p = msg.tag[0], j = msg.tag[2], key = msg.tag[3] >> 1, chip = msg.dst
        cdef const Phase* ph
        cdef Stream* st
        if p >= self.n_phases or (msg.tag[3] & 1) == 0:
            return  # not a transfer's last message (runs before it carry data only)
        st = self._slot(chip, key)
        ph = &self.phases[p]
        if st.phase != p or ph.kind > KIND_RING_AG:
            self._deliver_other(engine, msg, ph, chip, j, key, p, st, t_ps)
            return
        # the common case: a ring step in the phase the chip is in
        self._ring_recv(engine, ph, chip, j, key, p, st, msg.tag[1], t_ps)
        if st.remaining == 0:
            self._run_from(engine, chip, self._channel(key), j, p + 1, st.last_ps)

    cdef void prefetch_delivery(self, const Message* msg) noexcept nogil:
        # deliver() reads the receiving chip's record first: at 9,216 chips and more the
        # records (568 bytes per chip) are out of L2, and that read was 16% of the run's cycles
        __builtin_prefetch(self._slot(msg.dst, msg.tag[3] >> 1))

    cdef void _deliver_other(self, Engine engine, const Message* msg, const Phase* ph, int64_t chip, int64_t j,
                             int64_t key, int64_t p, Stream* st, int64_t t_ps) noexcept nogil:
        """deliver() for an early arrival, a mesh or a tree transfer (kept out of the ring path)."""
        cdef int64_t done
        if st.phase != p:
            # early: the chip has not entered phase p for this piece yet (only
            # reductions travel up a tree before the receiver entered it)
            if ph.kind == KIND_TREE_AR:
                st.tree_up[msg.tag[1] >> 1] += 1
            else:
                _early(st)[p] += 1
            return
        if ph.kind == KIND_MESH_RS or ph.kind == KIND_MESH_AG:
            self._mesh_recv(engine, ph, chip, st, t_ps)
            done = st.last_ps if st.remaining == 0 else -1
        else:
            done = self._tree_recv(engine, msg, chip, j, key, p, st, t_ps)
        if done >= 0:
            self._run_from(engine, chip, self._channel(key), j, p + 1, done)

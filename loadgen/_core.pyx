# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The C engine: per-thread epoll loops over non-blocking HTTP/1.x connections, GIL released.

What it is: :func:`start` takes an :class:`loadgen.engine_api.EngineConfig` and runs it on
``cfg.threads`` engine threads (Python threads that drop into a ``nogil`` C loop). Each thread
owns its connections (connection j on thread ``j % threads``), a small state machine per
connection (connect → write → read status line, headers, body → record → next), its own HDR
counts arrays, exact statistics and per-second timeline, all plain C. After the threads are
joined the per-thread data is merged into an :class:`loadgen.engine_api.EngineResult`.

Syscalls per request on a kept-alive connection: one ``send`` and one ``recv`` (plus
``epoll_wait`` amortised over ready sockets). ``EPOLLOUT`` is armed only while a non-blocking
connect is in progress or after a short write. Slot timers use ``epoll_pwait2`` (ns timeouts).

What it is not: an HTTP client library. It writes prebuilt request bytes, frames responses
just enough to count them (bodies are discarded), and knows nothing about options, reports or
Envoy. The semantics are those of :mod:`loadgen.engine_api`; ``loadgen._engine_py`` is the
readable twin.
"""

from libc.stdint cimport int64_t, uint32_t, uint64_t, int16_t
from libc.stdlib cimport calloc, free, realloc, malloc
from libc.string cimport memchr, memcpy, memset
from libc.stdio cimport snprintf
from libc.math cimport ceil

import os
import threading
import time

from loadgen.engine_api import ERROR_KINDS, EngineResult, Progress
from loadgen.errors import RunError, UsageError
from loadgen.recorder import (HDR_HIGHEST, TIMELINE_BUCKETS, Recorder, Second, hdr_layout,
                              timeline_index)

# ---------------------------------------------------------------------------------------------
# constants

cdef enum:
    NREC = 6            # recorders per thread
    R_LAT = 0
    R_SVC = 1
    R_ERRSVC = 2
    R_CONN = 3
    R_HDR = 4
    R_TOTAL = 5
    NCODES = 1001       # codes -1..999 at index code + 1
    NKINDS = 7
    TLB = 464           # timeline buckets (recorder.TIMELINE_BUCKETS)
    NSLOTS = 64         # distinct codes per thread in the timeline; more go to "other" (code 0)
    NEVENTS = 256
    RBUF = 65536
    HDR_MAX = 1048576   # header block limit (1 MiB)

cdef enum:  # error kinds, in ERROR_KINDS order
    E_REFUSED = 0
    E_CONNTIMEOUT = 1
    E_TIMEOUT = 2
    E_RESET = 3
    E_EOF = 4
    E_MALFORMED = 5
    E_OTHER = 6

cdef enum:  # connection states
    S_IDLE = 0          # no request; may hold an idle keep-alive socket
    S_WAIT = 1          # waiting in the slot heap
    S_CONNECTING = 2
    S_WRITING = 3
    S_READING = 4
    S_DONE = 5

cdef enum:  # parser states
    P_HEAD = 0
    P_BODY_CL = 1
    P_BODY_CLOSE = 2
    P_CH_SIZE = 3
    P_CH_EXT = 4
    P_CH_SIZE_LF = 5
    P_CH_DATA = 6
    P_CH_DATA_CR = 7
    P_CH_DATA_LF = 8
    P_CH_TRAILER = 9
    P_CH_SIZE_WS = 10   # whitespace after the chunk size: only more of it, ';' or (CR)LF may follow

cdef enum:  # parse results
    R_MORE = 0
    R_DONE = 1
    R_BAD = -1

if TIMELINE_BUCKETS != TLB:  # pragma: no cover - guards the copy of recorder.py's constant
    raise ImportError("loadgen._core was built for a different TIMELINE_BUCKETS")
if tuple(ERROR_KINDS) != ("connect_refused", "connect_timeout", "timeout", "reset", "eof",
                          "malformed", "other"):  # pragma: no cover
    raise ImportError("loadgen._core was built for a different ERROR_KINDS")

# ---------------------------------------------------------------------------------------------
# structs

cdef struct Stat:
    int64_t count
    int64_t vmin
    int64_t vmax
    double vsum
    double vsumsq

cdef struct Rec:
    Stat st
    uint64_t* counts
    int64_t divisor

cdef struct Sec:
    uint64_t requests
    uint64_t errors
    uint64_t overloaded
    uint32_t codes[NSLOTS + 1]
    uint32_t lat[TLB]

cdef struct Shared:
    int stop            # no new requests (stop(), abort_on)
    int abort           # end now
    int aborted_set
    int aborted_on
    int user_stop
    int64_t stop_ns

cdef struct Conn:
    int fd
    int gidx
    int state
    int reused          # the socket already carried a complete response
    int retried         # the current call already used its transparent retry
    uint32_t epmask
    int64_t calls
    int64_t k           # next slot index
    int64_t done
    int64_t sockets
    int64_t offset_ns
    int64_t end_ns      # no request starts at or after this (0: none)
    int64_t intended
    int64_t sent
    int64_t deadline
    int64_t connect_start
    size_t woff
    # response parsing
    int pst
    int code
    int http10
    int hclose
    int hkeep
    int chunked
    int have_cl
    int have_te
    int overloaded
    int got_any
    int ch_digits
    int64_t line_len
    int64_t clen
    int64_t remaining
    int64_t hbytes
    int64_t tbytes
    size_t leftover
    char* hbuf
    size_t hlen
    size_t hcap

cdef struct TState:
    int tid
    int nconns
    Conn* conns
    int epfd
    int use_pwait2
    # config (read only)
    const char* req
    size_t reqlen
    int head
    int keepalive
    int catchup
    int jitter
    int stretch
    int qps_mode
    double period_ns
    int64_t start_ns
    int64_t wall0_ns
    int64_t timeout_ns
    int64_t scan_ns
    int abort_on
    Shared* sh
    sockaddr_storage addr
    socklen_t addrlen
    int family
    int counts_len
    int unit_mag
    int sbhcm
    uint64_t sub_mask
    # results
    Rec rec[NREC]
    Stat sleep
    int64_t late
    int64_t skipped
    int64_t retries
    int64_t abandoned
    int64_t last_done_ns
    int64_t exit_ns
    uint64_t codes[NCODES]
    uint64_t over[NCODES]
    uint64_t errs[NKINDS]
    # timeline
    Sec* secs
    int64_t nsecs
    int64_t capsecs
    int16_t slot_code[NSLOTS]
    int nslots
    int16_t code_slot[NCODES]
    # scheduling
    int64_t* heap_t
    int* heap_c
    int heap_n
    int* ready
    int ready_n
    int active
    # progress (racy reads from Python)
    int64_t n_done
    int64_t n_err
    uint64_t rng
    # access log
    int logfd
    char* logbuf
    size_t loglen
    # failure inside the loop (re-raised in Python after join)
    int fail_errno
    const char* fail_where
    char* rbuf

# ---------------------------------------------------------------------------------------------
# small helpers

cdef int64_t HDR_HIGHEST_C = HDR_HIGHEST


cdef inline int64_t hdr_index(TState* t, uint64_t v) noexcept nogil:
    cdef int pow2ceiling = 64 - lg_clz64(v | t.sub_mask | 1)
    cdef int bucket = pow2ceiling - t.unit_mag - (t.sbhcm + 1)
    cdef int64_t sub = <int64_t>(v >> (bucket + t.unit_mag))
    return ((<int64_t>(bucket + 1)) << t.sbhcm) + sub - (<int64_t>1 << t.sbhcm)


cdef inline void stat_add(Stat* s, int64_t v) noexcept nogil:
    if s.count == 0 or v < s.vmin:
        s.vmin = v
    if s.count == 0 or v > s.vmax:
        s.vmax = v
    s.count += 1
    s.vsum += <double>v
    s.vsumsq += <double>v * <double>v


cdef inline void rec_add(TState* t, Rec* r, int64_t v) noexcept nogil:
    if v < 0:
        v = 0
    stat_add(&r.st, v)
    cdef int64_t hv = (v + r.divisor // 2) // r.divisor
    if hv > <int64_t>HDR_HIGHEST_C:
        hv = <int64_t>HDR_HIGHEST_C
    cdef int64_t idx = hdr_index(t, <uint64_t>hv)
    if 0 <= idx < t.counts_len:
        r.counts[idx] += 1



cdef inline int tl_index(int64_t v) noexcept nogil:
    if v < 0:
        v = 0
    if v > 4294967295LL:
        v = 4294967295LL
    if v < 32:
        return <int>v
    cdef int e = 63 - lg_clz64(<uint64_t>v)
    return 32 + (e - 5) * 16 + <int>((v >> (e - 4)) & 15)


def _timeline_index(v_us):
    """The C timeline index (exposed so tests can compare it with recorder.timeline_index)."""
    return tl_index(v_us)


def _hdr_index(v):
    """The C HDR counts index of ``v`` in the project layout (for tests)."""
    cdef TState t
    layout = hdr_layout()
    t.counts_len = layout[0]
    t.unit_mag = layout[1]
    t.sbhcm = layout[2]
    t.sub_mask = layout[3]
    return hdr_index(&t, <uint64_t>v)


cdef inline double rng_unit(TState* t) noexcept nogil:
    # xorshift64*
    cdef uint64_t x = t.rng
    x ^= x >> 12
    x ^= x << 25
    x ^= x >> 27
    t.rng = x
    return <double>((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0


cdef inline void fail(TState* t, const char* where) noexcept nogil:
    if t.fail_where == NULL:
        t.fail_errno = errno
        t.fail_where = where
    lg_store(&t.sh.abort, 1)

# ---------------------------------------------------------------------------------------------
# slot heap (min-heap of (time, conn index))

cdef void heap_push(TState* t, int64_t when, int ci) noexcept nogil:
    cdef int i = t.heap_n
    cdef int p
    t.heap_n += 1
    while i > 0:
        p = (i - 1) >> 1
        if t.heap_t[p] <= when:
            break
        t.heap_t[i] = t.heap_t[p]
        t.heap_c[i] = t.heap_c[p]
        i = p
    t.heap_t[i] = when
    t.heap_c[i] = ci


cdef int heap_pop(TState* t) noexcept nogil:
    cdef int top = t.heap_c[0]
    cdef int n
    cdef int i = 0
    cdef int ch
    cdef int64_t lt
    cdef int lc
    t.heap_n -= 1
    n = t.heap_n
    if n > 0:
        lt = t.heap_t[n]
        lc = t.heap_c[n]
        while True:
            ch = 2 * i + 1
            if ch >= n:
                break
            if ch + 1 < n and t.heap_t[ch + 1] < t.heap_t[ch]:
                ch += 1
            if t.heap_t[ch] >= lt:
                break
            t.heap_t[i] = t.heap_t[ch]
            t.heap_c[i] = t.heap_c[ch]
            i = ch
        t.heap_t[i] = lt
        t.heap_c[i] = lc
    return top

# ---------------------------------------------------------------------------------------------
# recording

cdef Sec* sec_at(TState* t, int64_t s) noexcept nogil:
    cdef int64_t ncap
    cdef Sec* p
    if s < 0:
        s = 0
    if s >= t.capsecs:
        ncap = t.capsecs * 2 if t.capsecs else 16
        while ncap <= s:
            ncap *= 2
        p = <Sec*>realloc(t.secs, ncap * sizeof(Sec))
        if p == NULL:
            return NULL
        memset(p + t.capsecs, 0, (ncap - t.capsecs) * sizeof(Sec))
        t.secs = p
        t.capsecs = ncap
    if s >= t.nsecs:
        t.nsecs = s + 1
    return t.secs + s


cdef void log_flush(TState* t) noexcept nogil:
    cdef size_t off = 0
    cdef ssize_t n
    while off < t.loglen:
        n = write(t.logfd, t.logbuf + off, t.loglen - off)
        if n < 0:
            if errno == EINTR:
                continue
            fail(t, "writing the access log")
            break
        off += n
    t.loglen = 0


cdef void log_call(TState* t, Conn* c, int64_t now, int code, int ok) noexcept nogil:
    cdef int n
    if t.loglen > RBUF - 512:
        log_flush(t)
    n = snprintf(t.logbuf + t.loglen, 512,
                 b'{"latency":%f,"timestamp":%lld,"thread":%d,"iter":%lld,"ok":%s,"details":"%d"}\n',
                 <double>(now - c.sent) / 1e9, <long long>(t.wall0_ns + (c.sent - t.start_ns)),
                 c.gidx, <long long>c.done, b"true" if ok else b"false", code)
    if n > 0:
        t.loglen += n


cdef void record_call(TState* t, Conn* c, int64_t now, int code, int kind) noexcept nogil:
    """One completed call (code -1 with an error kind, or an HTTP status)."""
    cdef int ok = (200 <= code < 300) or code == 418
    cdef int64_t lat = now - c.intended
    cdef Sec* s
    cdef int slot
    rec_add(t, &t.rec[R_LAT], lat)
    rec_add(t, &t.rec[R_SVC], now - c.sent)
    if not ok:
        rec_add(t, &t.rec[R_ERRSVC], now - c.sent)
    rec_add(t, &t.rec[R_HDR], c.hbytes)
    rec_add(t, &t.rec[R_TOTAL], c.tbytes)
    t.codes[code + 1] += 1
    if c.overloaded and code > 0:
        t.over[code + 1] += 1
    if kind >= 0:
        t.errs[kind] += 1
        t.n_err += 1
    s = sec_at(t, (now - t.start_ns) // 1000000000)
    if s == NULL:
        fail(t, "growing the timeline")
    else:
        s.requests += 1
        if kind >= 0:
            s.errors += 1
        if c.overloaded and code > 0:
            s.overloaded += 1
        slot = t.code_slot[code + 1]
        if slot < 0:
            if t.nslots < NSLOTS:
                slot = t.nslots
                t.slot_code[slot] = code
                t.code_slot[code + 1] = slot
                t.nslots += 1
            else:
                slot = NSLOTS
        s.codes[slot] += 1
        s.lat[tl_index(lat // 1000)] += 1
    if t.logfd >= 0:
        log_call(t, c, now, code, ok)
    c.done += 1
    t.n_done += 1
    t.last_done_ns = now
    if t.abort_on != 0 and code == t.abort_on:
        if lg_cas(&t.sh.aborted_set, 0, 1):
            t.sh.aborted_on = code
        lg_store(&t.sh.stop, 1)

# ---------------------------------------------------------------------------------------------
# connection life cycle

cdef inline void close_sock(TState* t, Conn* c) noexcept nogil:
    if c.fd >= 0:
        close(c.fd)  # also removes it from the epoll set
        c.fd = -1
    c.epmask = 0
    c.reused = 0


cdef inline void to_ready(TState* t, Conn* c, int ci) noexcept nogil:
    c.state = S_IDLE
    t.ready[t.ready_n] = ci
    t.ready_n += 1


cdef inline void set_mask(TState* t, Conn* c, int ci, uint32_t mask) noexcept nogil:
    cdef epoll_event ev
    if c.epmask == mask:
        return
    ev.events = mask
    ev.data.u64 = <uint64_t>ci
    if epoll_ctl(t.epfd, EPOLL_CTL_ADD if c.epmask == 0 else EPOLL_CTL_MOD, c.fd, &ev) < 0:
        fail(t, "epoll_ctl")
    c.epmask = mask


cdef void finish_error(TState* t, Conn* c, int ci, int64_t now, int kind) noexcept nogil:
    t.active -= 1
    close_sock(t, c)
    record_call(t, c, now, -1, kind)
    to_ready(t, c, ci)


cdef inline void reset_parse(Conn* c) noexcept nogil:
    c.pst = P_HEAD
    c.code = 0
    c.http10 = 0
    c.hclose = 0
    c.hkeep = 0
    c.chunked = 0
    c.have_cl = 0
    c.overloaded = 0
    c.got_any = 0
    c.hbytes = 0
    c.tbytes = 0
    c.hlen = 0
    c.leftover = 0


cdef void begin_write(TState* t, Conn* c, int ci, int64_t now) noexcept nogil:
    c.state = S_WRITING
    c.woff = 0
    c.deadline = now + t.timeout_ns
    do_write(t, c, ci, now)


cdef void start_call(TState* t, Conn* c, int ci, int64_t now) noexcept nogil:
    """Begin the call whose intended time is already in c.intended (now = actual start)."""
    c.sent = now
    c.retried = 0
    t.active += 1
    reset_parse(c)
    if c.fd >= 0:
        begin_write(t, c, ci, now)
    else:
        open_conn(t, c, ci, now)


cdef void open_conn(TState* t, Conn* c, int ci, int64_t now) noexcept nogil:
    cdef int one = 1
    cdef int r
    cdef int fd = socket(t.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
    c.reused = 0
    if fd < 0:
        finish_error(t, c, ci, now, E_OTHER)
        return
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
    c.fd = fd
    c.epmask = 0
    c.connect_start = now
    r = connect(fd, <sockaddr*>&t.addr, t.addrlen)
    if r == 0:
        connected(t, c, ci, lg_mono_ns())
    elif errno == EINPROGRESS:
        c.state = S_CONNECTING
        c.deadline = now + t.timeout_ns
        set_mask(t, c, ci, EPOLLIN | EPOLLOUT)
    elif errno == ECONNREFUSED:
        finish_error(t, c, ci, now, E_REFUSED)
    else:
        finish_error(t, c, ci, now, E_OTHER)


cdef void connected(TState* t, Conn* c, int ci, int64_t now) noexcept nogil:
    c.sockets += 1
    rec_add(t, &t.rec[R_CONN], now - c.connect_start)
    set_mask(t, c, ci, EPOLLIN)
    begin_write(t, c, ci, now)


cdef void on_connect_event(TState* t, Conn* c, int ci) noexcept nogil:
    cdef int err = 0
    cdef socklen_t len = sizeof(err)
    cdef int64_t now = lg_mono_ns()
    if getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0:
        err = errno
    if err == 0:
        connected(t, c, ci, now)
    elif err == ECONNREFUSED:
        finish_error(t, c, ci, now, E_REFUSED)
    else:
        finish_error(t, c, ci, now, E_OTHER)


cdef void retry_or_fail(TState* t, Conn* c, int ci, int64_t now, int kind) noexcept nogil:
    """A transport failure on an open socket: transparent retry or an error call."""
    if c.reused and not c.retried and not c.got_any and (kind == E_EOF or kind == E_RESET):
        close_sock(t, c)
        t.retries += 1
        reset_parse(c)
        c.retried = 1
        open_conn(t, c, ci, now)
        return
    finish_error(t, c, ci, now, kind)


cdef void do_write(TState* t, Conn* c, int ci, int64_t now) noexcept nogil:
    cdef ssize_t n
    cdef int e
    while c.woff < t.reqlen:
        n = send(c.fd, t.req + c.woff, t.reqlen - c.woff, MSG_NOSIGNAL)
        if n >= 0:
            c.woff += n
            continue
        e = errno
        if e == EINTR:
            continue
        if e == EAGAIN or e == EWOULDBLOCK:
            set_mask(t, c, ci, EPOLLIN | EPOLLOUT)
            return
        retry_or_fail(t, c, ci, now, E_RESET if (e == EPIPE or e == ECONNRESET) else E_OTHER)
        return
    if c.epmask != EPOLLIN:
        set_mask(t, c, ci, EPOLLIN)
    c.state = S_READING


cdef void finish_ok(TState* t, Conn* c, int ci, int64_t now) noexcept nogil:
    cdef int code = c.code
    cdef int ok = (200 <= code < 300) or code == 418
    t.active -= 1
    record_call(t, c, now, code, -1)
    if (c.hclose or (c.http10 and not c.hkeep) or c.pst == P_BODY_CLOSE or not t.keepalive
            or not ok or c.leftover):
        close_sock(t, c)
    else:
        c.reused = 1
    to_ready(t, c, ci)

# ---------------------------------------------------------------------------------------------
# response parsing

cdef inline int lower(int ch) noexcept nogil:
    if 65 <= ch <= 90:
        return ch + 32
    return ch


cdef int last_token_is(const char* p, size_t n, const char* word, size_t wn) noexcept nogil:
    """Whether the last comma-separated token of p[0:n] is ``word`` (case-insensitive)."""
    cdef size_t s = n
    cdef size_t e = n
    while s > 0 and p[s - 1] != 44:
        s -= 1
    while s < e and (p[s] == 32 or p[s] == 9):
        s += 1
    while e > s and (p[e - 1] == 32 or p[e - 1] == 9):
        e -= 1
    return e - s == wn and strncasecmp(p + s, word, wn) == 0


cdef int has_token_ci(const char* p, size_t n, const char* word, size_t wn) noexcept nogil:
    """Whether one comma-separated token of p[0:n] (OWS trimmed) is ``word`` (case-insensitive).

    Tokens, not substrings: ``Connection: closed`` is not ``close`` (the Python engine and h11
    agree; found by tests/robust/test_differential.py)."""
    cdef size_t s = 0
    cdef size_t e
    cdef size_t a
    cdef size_t b
    while s <= n:
        e = s
        while e < n and p[e] != 44:
            e += 1
        a = s
        b = e
        while a < b and (p[a] == 32 or p[a] == 9):
            a += 1
        while b > a and (p[b - 1] == 32 or p[b - 1] == 9):
            b -= 1
        if b - a == wn and strncasecmp(p + a, word, wn) == 0:
            return 1
        s = e + 1
    return 0


cdef inline int bad_start(const char* p, size_t n) noexcept nogil:
    """Whether the first bytes of a header block cannot begin ``HTTP/``: an HTTP/0.9-style reply
    (a body without a status line) is malformed at once instead of waiting for a blank line that
    never comes (tests/robust/test_hostile.py::test_http09_reply)."""
    cdef size_t i
    for i in range(n if n < 5 else 5):
        if p[i] != b"HTTP/"[i]:
            return 1
    return 0


cdef int64_t find_head_end(const char* p, size_t n, size_t start) noexcept nogil:
    """Index just past the blank line ending a header block, or -1."""
    cdef const char* q
    cdef size_t i = start
    while i < n:
        q = <const char*>memchr(p + i, 10, n - i)
        if q == NULL:
            return -1
        i = <size_t>(q - p)
        if i + 1 < n and p[i + 1] == 10:
            return <int64_t>(i + 2)
        if i + 2 < n and p[i + 1] == 13 and p[i + 2] == 10:
            return <int64_t>(i + 3)
        i += 1
    return -1


cdef int parse_head(TState* t, Conn* c, const char* p, size_t n) noexcept nogil:
    """Parse one complete header block p[0:n] (status line to blank line). 0 ok, -1 malformed."""
    cdef size_t pos = 0
    cdef size_t eol
    cdef size_t ln
    cdef size_t colon
    cdef size_t vs
    cdef size_t ve
    cdef const char* line
    cdef const char* q
    cdef int code
    cdef int64_t v
    c.code = 0
    c.http10 = 0
    c.hclose = 0
    c.hkeep = 0
    c.chunked = 0
    c.have_cl = 0
    c.have_te = 0
    c.overloaded = 0
    # status line
    q = <const char*>memchr(p, 10, n)
    if q == NULL:
        return -1
    eol = <size_t>(q - p)
    ln = eol
    if ln > 0 and p[ln - 1] == 13:
        ln -= 1
    if ln < 12 or p[0] != 72 or p[1] != 84 or p[2] != 84 or p[3] != 80 or p[4] != 47:  # "HTTP/"
        return -1
    if not (48 <= p[5] <= 57) or p[6] != 46 or not (48 <= p[7] <= 57) or p[8] != 32:
        return -1
    if not (49 <= p[9] <= 57 and 48 <= p[10] <= 57 and 48 <= p[11] <= 57):
        return -1
    if ln > 12 and p[12] != 32:
        return -1
    code = (p[9] - 48) * 100 + (p[10] - 48) * 10 + (p[11] - 48)
    c.code = code
    c.http10 = p[5] == 49 and p[7] == 48
    pos = eol + 1
    # header lines
    while pos < n:
        q = <const char*>memchr(p + pos, 10, n - pos)
        if q == NULL:
            return -1
        eol = <size_t>(q - p)
        line = p + pos
        ln = eol - pos
        if ln > 0 and line[ln - 1] == 13:
            ln -= 1
        pos = eol + 1
        if ln == 0:
            break
        if line[0] == 32 or line[0] == 9:
            return -1  # obsolete line folding (or a name with leading space)
        q = <const char*>memchr(line, 58, ln)
        if q == NULL:
            return -1
        colon = <size_t>(q - line)
        if colon == 0 or line[colon - 1] == 32 or line[colon - 1] == 9:
            return -1
        vs = colon + 1
        while vs < ln and (line[vs] == 32 or line[vs] == 9):
            vs += 1
        ve = ln
        while ve > vs and (line[ve - 1] == 32 or line[ve - 1] == 9):
            ve -= 1
        if colon == 14 and strncasecmp(line, b"content-length", 14) == 0:
            if ve == vs or ve - vs > 18:
                return -1
            v = 0
            while vs < ve:
                if not (48 <= line[vs] <= 57):
                    return -1
                v = v * 10 + (line[vs] - 48)
                vs += 1
            if c.have_cl and c.clen != v:
                return -1  # conflicting Content-Length values
            c.clen = v
            c.have_cl = 1
        elif colon == 17 and strncasecmp(line, b"transfer-encoding", 17) == 0:
            # the last coding decides: chunked, or anything else (the body ends at close)
            c.have_te = 1
            c.chunked = last_token_is(line + vs, ve - vs, b"chunked", 7)
        elif colon == 10 and strncasecmp(line, b"connection", 10) == 0:
            if has_token_ci(line + vs, ve - vs, b"close", 5):
                c.hclose = 1
            if has_token_ci(line + vs, ve - vs, b"keep-alive", 10):
                c.hkeep = 1
        elif colon == 18 and strncasecmp(line, b"x-envoy-overloaded", 18) == 0:
            c.overloaded = 1
    return 0


cdef inline int hexval(int ch) noexcept nogil:
    if 48 <= ch <= 57:
        return ch - 48
    if 97 <= ch <= 102:
        return ch - 87
    if 65 <= ch <= 70:
        return ch - 55
    return -1


cdef int after_head(TState* t, Conn* c) noexcept nogil:
    """Choose the body framing once the header block is parsed; R_DONE when there is no body."""
    if 100 <= c.code < 200:
        c.pst = P_HEAD  # interim response: read the real one
        return R_MORE
    if t.head or c.code == 204 or c.code == 304:
        return R_DONE
    if c.chunked:
        c.pst = P_CH_SIZE
        c.ch_digits = 0
        c.remaining = 0
        return R_MORE
    if c.have_cl and not c.have_te:
        if c.clen == 0:
            return R_DONE
        c.remaining = c.clen
        c.pst = P_BODY_CL
        return R_MORE
    c.pst = P_BODY_CLOSE
    return R_MORE


cdef int parse(TState* t, Conn* c, const char* p, size_t n) noexcept nogil:
    """Feed n response bytes; R_MORE, R_DONE (c.leftover = unused bytes) or R_BAD."""
    cdef int64_t e
    cdef size_t take
    cdef size_t old
    cdef size_t ncap
    cdef char* nb
    cdef int ch
    cdef int hv
    cdef int r
    while True:
        if c.pst == P_HEAD:
            if n == 0:
                return R_MORE
            if c.hlen == 0:
                if bad_start(p, n):
                    return R_BAD
                e = find_head_end(p, n, 0)
                if e >= 0:
                    if parse_head(t, c, p, <size_t>e) < 0:
                        return R_BAD
                    c.hbytes += e  # interim (1xx) heads count too
                    p += e
                    n -= <size_t>e
                    r = after_head(t, c)
                    if r == R_DONE:
                        c.leftover = n
                        return R_DONE
                    continue
            # accumulate the header block across reads
            take = n
            if take > HDR_MAX + 4 - c.hlen:
                take = HDR_MAX + 4 - c.hlen
            if c.hlen + take > c.hcap:
                ncap = c.hcap * 2 if c.hcap else 4096
                while ncap < c.hlen + take:
                    ncap *= 2
                nb = <char*>realloc(c.hbuf, ncap)
                if nb == NULL:
                    fail(t, "growing a header buffer")
                    return R_BAD
                c.hbuf = nb
                c.hcap = ncap
            memcpy(c.hbuf + c.hlen, p, take)
            old = c.hlen
            c.hlen += take
            if old < 5 and bad_start(c.hbuf, c.hlen):
                return R_BAD
            e = find_head_end(c.hbuf, c.hlen, old - 2 if old >= 2 else 0)
            if e < 0:
                if c.hlen > HDR_MAX:
                    return R_BAD
                return R_MORE
            if e > HDR_MAX or parse_head(t, c, c.hbuf, <size_t>e) < 0:
                return R_BAD
            c.hbytes += e  # interim (1xx) heads count too
            p += <size_t>e - old
            n -= <size_t>e - old
            c.hlen = 0
            r = after_head(t, c)
            if r == R_DONE:
                c.leftover = n
                return R_DONE
            continue
        elif c.pst == P_BODY_CL:
            take = n if <int64_t>n < c.remaining else <size_t>c.remaining
            c.remaining -= take
            p += take
            n -= take
            if c.remaining == 0:
                c.leftover = n
                return R_DONE
            return R_MORE
        elif c.pst == P_BODY_CLOSE:
            return R_MORE
        elif c.pst == P_CH_DATA:
            take = n if <int64_t>n < c.remaining else <size_t>c.remaining
            c.remaining -= take
            p += take
            n -= take
            if c.remaining == 0:
                c.pst = P_CH_DATA_CR
            if n == 0:
                return R_MORE
            continue
        # byte-wise states of chunk framing
        if n == 0:
            return R_MORE
        ch = p[0]
        p += 1
        n -= 1
        if c.pst == P_CH_SIZE:
            hv = hexval(ch)
            if hv >= 0:
                if c.ch_digits >= 15:
                    return R_BAD
                c.remaining = c.remaining * 16 + hv
                c.ch_digits += 1
            elif c.ch_digits == 0:
                return R_BAD
            elif ch == 59:  # ';' extension
                c.pst = P_CH_EXT
            elif ch == 32 or ch == 9:  # whitespace: only before ';' or the line end
                c.pst = P_CH_SIZE_WS
            elif ch == 13:
                c.pst = P_CH_SIZE_LF
            elif ch == 10:
                c.pst = P_CH_SIZE_LF
                p -= 1
                n += 1
            else:
                return R_BAD
        elif c.pst == P_CH_SIZE_WS:
            # "5 junk" used to be taken as an extension; RFC 9112 §7.1.1 allows only BWS ";"
            # (tests/robust/test_differential.py)
            if ch == 59:
                c.pst = P_CH_EXT
            elif ch == 13:
                c.pst = P_CH_SIZE_LF
            elif ch == 10:
                c.pst = P_CH_SIZE_LF
                p -= 1
                n += 1
            elif ch != 32 and ch != 9:
                return R_BAD
        elif c.pst == P_CH_EXT:
            if ch == 10:
                c.pst = P_CH_SIZE_LF
                p -= 1
                n += 1
        elif c.pst == P_CH_SIZE_LF:
            if ch != 10:
                return R_BAD
            if c.remaining == 0:
                c.pst = P_CH_TRAILER
                c.line_len = 0
            else:
                c.pst = P_CH_DATA
        elif c.pst == P_CH_DATA_CR:
            if ch == 13:
                c.pst = P_CH_DATA_LF
            elif ch == 10:
                c.pst = P_CH_SIZE
                c.ch_digits = 0
                c.remaining = 0
            else:
                return R_BAD
        elif c.pst == P_CH_DATA_LF:
            if ch != 10:
                return R_BAD
            c.pst = P_CH_SIZE
            c.ch_digits = 0
            c.remaining = 0
        elif c.pst == P_CH_TRAILER:
            if ch == 10:
                if c.line_len == 0:
                    c.leftover = n
                    return R_DONE
                c.line_len = 0
            elif ch != 13:
                c.line_len += 1
                if c.line_len > HDR_MAX:
                    return R_BAD


def _fuzz_parse(bytes data, bint head=False, int split=0):
    """TEST-ONLY entry point (fuzzing, differential tests): run the engine's response parser
    (:func:`parse`, the same C code the epoll loop uses) over ``data`` without sockets.

    ``data`` is fed in pieces of ``split`` bytes (0 or more than the engine's 64 KiB read buffer:
    pieces of 64 KiB), as successive reads would deliver it. Returns ``(status, code, hbytes, consumed, close_delimited, keep)``: ``status`` is
    "done" (a complete response; ``consumed`` bytes of ``data`` belong to it), "more" (incomplete:
    for a close-delimited body that is the end once the peer closes) or "bad" (malformed);
    ``close_delimited`` says the body ends at close; ``keep`` whether the engine would reuse the
    connection after a complete response (before the keep-alive/non-OK policy). Not part of the
    engine API; nothing outside ``tests/`` calls it.
    """
    cdef Shared sh
    cdef TState* t = <TState*>calloc(1, sizeof(TState))
    cdef Conn* c = <Conn*>calloc(1, sizeof(Conn))
    cdef const char* p = data
    cdef size_t n = len(data)
    cdef size_t off = 0
    cdef size_t step
    cdef int r = R_MORE
    if t == NULL or c == NULL:
        free(t)
        free(c)
        raise MemoryError()
    memset(&sh, 0, sizeof(sh))
    t.sh = &sh
    t.head = head
    c.fd = -1
    reset_parse(c)
    try:
        if n == 0:
            r = parse(t, c, p, 0)
        while off < n:
            # pieces of at most RBUF bytes, as recv() delivers them in the engine
            step = <size_t>split if 0 < split < RBUF else RBUF
            if step > n - off:
                step = n - off
            r = parse(t, c, p + off, step)
            off += step
            if r != R_MORE:
                off -= c.leftover if r == R_DONE else 0
                break
        status = "done" if r == R_DONE else "bad" if r == R_BAD else "more"
        keep = (r == R_DONE and not (c.hclose or (c.http10 and not c.hkeep) or c.pst == P_BODY_CLOSE))
        return (status, c.code, c.hbytes, off, c.pst == P_BODY_CLOSE, bool(keep))
    finally:
        free(c.hbuf)
        free(c)
        free(t)


cdef void do_read(TState* t, Conn* c, int ci) noexcept nogil:
    cdef ssize_t n
    cdef int r
    cdef int e
    cdef int64_t now
    while True:
        n = recv(c.fd, t.rbuf, RBUF, 0)
        if n > 0:
            c.got_any = 1
            c.tbytes += n
            r = parse(t, c, t.rbuf, <size_t>n)
            if r == R_DONE:
                c.tbytes -= <int64_t>c.leftover
                if c.state == S_WRITING:
                    c.hclose = 1  # an early answer: the request's rest was never sent, so no reuse
                finish_ok(t, c, ci, lg_mono_ns())
                return
            if r == R_BAD:
                finish_error(t, c, ci, lg_mono_ns(), E_MALFORMED)
                return
            if n < RBUF:
                return
            continue
        now = lg_mono_ns()
        if n == 0:
            if c.pst == P_BODY_CLOSE:
                finish_ok(t, c, ci, now)
            else:
                retry_or_fail(t, c, ci, now, E_EOF)
            return
        e = errno
        if e == EINTR:
            continue
        if e == EAGAIN or e == EWOULDBLOCK:
            return
        retry_or_fail(t, c, ci, now, E_RESET if e == ECONNRESET else E_OTHER)
        return


cdef void on_idle_event(TState* t, Conn* c) noexcept nogil:
    """Readable while no request is in flight: the server closed (or misbehaved); drop the socket."""
    cdef ssize_t n = recv(c.fd, t.rbuf, RBUF, 0)
    if n < 0 and (errno == EAGAIN or errno == EWOULDBLOCK or errno == EINTR):
        return
    close_sock(t, c)

# ---------------------------------------------------------------------------------------------
# scheduling

cdef inline double slot_ns(TState* t, Conn* c, int64_t k) noexcept nogil:
    if t.stretch and c.calls > 1:
        return (<double>k + <double>k / <double>(c.calls - 1)) * t.period_ns
    return <double>k * t.period_ns


cdef void schedule_next(TState* t, Conn* c, int ci, int64_t now) noexcept nogil:
    """An idle connection: start its next call now, park it in the heap, or finish it."""
    cdef double rel
    cdef double slot
    cdef double eff
    cdef double wait
    cdef int64_t k2
    cdef int64_t target
    cdef bint last_stretched
    if lg_load(&t.sh.stop) or (c.calls >= 0 and c.k >= c.calls):
        c.state = S_DONE
        return
    # fortio lets the last call of a stretched schedule through (it lands on the end)
    last_stretched = t.stretch and c.k == c.calls - 1
    if c.end_ns and now >= c.end_ns and not last_stretched:
        c.state = S_DONE
        return
    if not t.qps_mode:
        c.k += 1
        c.intended = now
        start_call(t, c, ci, now)
        return
    rel = <double>(now - t.start_ns - c.offset_ns)
    slot = slot_ns(t, c, c.k)
    if not t.catchup and c.k > 0 and slot < rel:  # slot 0 is the run's start: never skipped
        eff = t.period_ns * (1.0 + 1.0 / <double>(c.calls - 1)) if (t.stretch and c.calls > 1) else t.period_ns
        k2 = <int64_t>ceil(rel / eff) - 1
        if k2 < c.k:
            k2 = c.k
        while slot_ns(t, c, k2) < rel:
            k2 += 1
        if c.calls >= 0 and k2 >= c.calls:
            t.skipped += c.calls - c.k
            c.k = c.calls
            c.state = S_DONE
            return
        t.skipped += k2 - c.k
        c.k = k2
        slot = slot_ns(t, c, k2)
        last_stretched = t.stretch and c.k == c.calls - 1
    wait = slot - rel
    if c.k == 0 and wait < 0:
        wait = 0  # slot 0 is never late (thread start-up takes a few µs)
    if t.jitter and wait > 0:
        wait = wait * (0.9 + 0.2 * rng_unit(t))
    target = now + <int64_t>wait
    if c.end_ns and target >= c.end_ns and not last_stretched:
        c.state = S_DONE
        return
    stat_add(&t.sleep, <int64_t>wait)
    if wait < 0:
        t.late += 1
    c.k += 1
    c.intended = target
    if wait <= 0:
        start_call(t, c, ci, now)
    else:
        c.state = S_WAIT
        heap_push(t, target, ci)


cdef void scan_timeouts(TState* t, int64_t now) noexcept nogil:
    cdef int i
    cdef Conn* c
    for i in range(t.nconns):
        c = &t.conns[i]
        if c.state == S_CONNECTING:
            if now >= c.deadline:
                finish_error(t, c, i, now, E_CONNTIMEOUT)
        elif c.state == S_WRITING or c.state == S_READING:
            if now >= c.deadline:
                finish_error(t, c, i, now, E_TIMEOUT)


cdef void handle_event(TState* t, int ci, uint32_t ev) noexcept nogil:
    cdef Conn* c = &t.conns[ci]
    cdef int64_t k
    if c.fd < 0:
        return
    if c.state == S_CONNECTING:
        on_connect_event(t, c, ci)
    elif c.state == S_WRITING:
        if ev & (EPOLLIN | EPOLLHUP | EPOLLERR):
            # the server answers (or fails) before taking the whole request, as Envoy does with a
            # circuit-breaker 503 for a large body: read it, or the answer is lost to a later reset
            k = c.k
            do_read(t, c, ci)
            if c.k != k or c.state != S_WRITING:
                return
            if not (ev & EPOLLOUT):
                return
        do_write(t, c, ci, lg_mono_ns())
        if c.state == S_READING and (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)):
            do_read(t, c, ci)
    elif c.state == S_READING:
        do_read(t, c, ci)
    else:
        on_idle_event(t, c)


cdef void run_thread(TState* t) noexcept nogil:
    cdef epoll_event events[NEVENTS]
    cdef int64_t now
    cdef int64_t next_scan
    cdef int64_t drain_deadline = 0
    cdef int64_t until
    cdef int draining = 0
    cdef int n
    cdef int i
    cdef int nr
    cdef Conn* c
    t.epfd = epoll_create1(EPOLL_CLOEXEC)
    if t.epfd < 0:
        fail(t, "epoll_create1")
        t.exit_ns = lg_mono_ns()
        return
    if t.qps_mode:
        lg_fine_timer_slack()
    for i in range(t.nconns):
        t.ready[t.ready_n] = i
        t.ready_n += 1
    now = lg_mono_ns()
    next_scan = now + t.scan_ns
    while True:
        if lg_load(&t.sh.abort):
            break
        if not draining and lg_load(&t.sh.stop):
            draining = 1
            drain_deadline = now + t.timeout_ns
            while t.heap_n > 0:
                t.conns[heap_pop(t)].state = S_DONE
        # idle connections (this iteration's snapshot; immediate failures wait for the next one)
        nr = t.ready_n
        if nr:
            t.ready_n = 0
            for i in range(nr):
                c = &t.conns[t.ready[i]]
                if c.state == S_IDLE:
                    schedule_next(t, c, t.ready[i], now)
        # due slots
        while t.heap_n > 0 and t.heap_t[0] <= now:
            i = heap_pop(t)
            start_call(t, &t.conns[i], i, now)
        if now >= next_scan:
            scan_timeouts(t, now)
            next_scan = now + t.scan_ns
        if t.active == 0 and t.heap_n == 0 and t.ready_n == 0:
            break
        if draining and now >= drain_deadline:
            break
        if t.ready_n:
            until = now
        else:
            until = next_scan
            if t.heap_n > 0 and t.heap_t[0] < until:
                until = t.heap_t[0]
            if draining and drain_deadline < until:
                until = drain_deadline
            if until > now + 20000000:
                until = now + 20000000
        n = lg_epoll_wait_ns(t.epfd, events, NEVENTS, until - now, &t.use_pwait2)
        if n < 0 and errno != EINTR:
            fail(t, "epoll_wait")
            break
        for i in range(n):
            handle_event(t, <int>events[i].data.u64, events[i].events)
        now = lg_mono_ns()
    # the end: anything still in flight is abandoned
    for i in range(t.nconns):
        c = &t.conns[i]
        if c.state == S_CONNECTING or c.state == S_WRITING or c.state == S_READING:
            t.abandoned += 1
        close_sock(t, c)
    if t.logfd >= 0 and t.loglen:
        log_flush(t)
    close(t.epfd)
    t.epfd = -1
    t.exit_ns = lg_mono_ns()

# ---------------------------------------------------------------------------------------------
# Python side

cdef class _Handle:
    """A started run of the C engine (see :class:`loadgen.engine_api.EngineHandle`)."""

    cdef Shared* sh
    cdef TState** ts
    cdef int nthreads
    cdef int nconns
    cdef int64_t start_ns
    cdef double start_wall
    cdef bytes req
    cdef object cfg
    cdef list threads
    cdef object _result
    cdef object _done
    cdef object _lock
    cdef int logfd
    cdef bint interrupted

    def __cinit__(self):
        self.sh = NULL
        self.ts = NULL
        self.nthreads = 0
        self.logfd = -1

    def __dealloc__(self):
        cdef int i
        cdef int j
        cdef TState* t
        if self.ts != NULL:
            for i in range(self.nthreads):
                t = self.ts[i]
                if t == NULL:
                    continue
                for j in range(NREC):
                    free(t.rec[j].counts)
                if t.conns != NULL:
                    for j in range(t.nconns):
                        free(t.conns[j].hbuf)
                        if t.conns[j].fd >= 0:
                            close(t.conns[j].fd)
                free(t.conns)
                free(t.secs)
                free(t.heap_t)
                free(t.heap_c)
                free(t.ready)
                free(t.rbuf)
                free(t.logbuf)
                free(t)
            free(self.ts)
        free(self.sh)
        if self.logfd >= 0:
            close(self.logfd)

    # --- EngineHandle --------------------------------------------------------------------
    def stop(self):
        """Start no new requests; in-flight ones get up to the timeout."""
        if self._alive():
            self.interrupted = True
            if self.sh.stop_ns == 0:
                self.sh.stop_ns = lg_mono_ns()
        lg_store(&self.sh.user_stop, 1)
        lg_store(&self.sh.stop, 1)

    def abort(self):
        """End now; in-flight requests are abandoned."""
        if self._alive():
            self.interrupted = True
            if self.sh.stop_ns == 0:
                self.sh.stop_ns = lg_mono_ns()
        lg_store(&self.sh.stop, 1)
        lg_store(&self.sh.abort, 1)

    def progress(self):
        cdef int64_t done = 0
        cdef int64_t errs = 0
        cdef int i
        for i in range(self.nthreads):
            done += self.ts[i].n_done
            errs += self.ts[i].n_err
        return Progress(done=done, errors=errs, elapsed_s=(lg_mono_ns() - self.start_ns) / 1e9)

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        for th in self.threads:
            while th.is_alive():
                slice_s = 0.05
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    slice_s = min(slice_s, left)
                th.join(slice_s)
        return True

    def result(self):
        if self._alive():
            raise RunError("the C engine is still running; call wait() first")
        with self._lock:
            if self._result is None:
                self._result = self._build()
        return self._result

    # --- internals -----------------------------------------------------------------------
    def _alive(self):
        for th in self.threads:
            if th.is_alive():
                return True
        return False

    def _run(self, int i):
        cdef TState* t = self.ts[i]
        with nogil:
            run_thread(t)

    def _build(self):
        cdef int i
        cdef int j
        cdef int r
        cdef int64_t k
        cdef int clen
        cdef TState* t
        cdef uint64_t* merged
        cdef Stat st
        cdef Stat* s
        cdef int64_t last = 0
        cdef int64_t maxsec = 0
        cdef int64_t end_ns
        cdef Sec* sp
        for i in range(self.nthreads):
            t = self.ts[i]
            if t.fail_where != NULL:
                msg = t.fail_where.decode("ascii", "replace")
                raise RunError(f"C engine thread {i} failed in {msg}: {os.strerror(t.fail_errno)}")
        res = EngineResult()
        res.start_wall = self.start_wall
        recs = [res.latency, res.service, res.error_service, res.connect_time, res.header_size,
                res.total_size]
        clen = self.ts[0].counts_len
        merged = <uint64_t*>calloc(clen, sizeof(uint64_t))
        if merged == NULL:
            raise MemoryError()
        try:
            for r in range(NREC):
                memset(merged, 0, clen * sizeof(uint64_t))
                st.count = 0
                st.vmin = 0
                st.vmax = 0
                st.vsum = 0
                st.vsumsq = 0
                for i in range(self.nthreads):
                    s = &self.ts[i].rec[r].st
                    if s.count == 0:
                        continue
                    for j in range(clen):
                        merged[j] += self.ts[i].rec[r].counts[j]
                    if st.count == 0 or s.vmin < st.vmin:
                        st.vmin = s.vmin
                    if st.count == 0 or s.vmax > st.vmax:
                        st.vmax = s.vmax
                    st.count += s.count
                    st.vsum += s.vsum
                    st.vsumsq += s.vsumsq
                if st.count:
                    recs[r].fill_counts((<char*>merged)[:clen * 8], st.count, st.vmin, st.vmax,
                                        st.vsum, st.vsumsq)
        finally:
            free(merged)
        codes = {}
        over = {}
        errors = {kind: 0 for kind in ERROR_KINDS}
        first_sleep = True
        for i in range(self.nthreads):
            t = self.ts[i]
            for j in range(NCODES):
                if t.codes[j]:
                    codes[j - 1] = codes.get(j - 1, 0) + t.codes[j]
                if t.over[j]:
                    over[j - 1] = over.get(j - 1, 0) + t.over[j]
            for j in range(NKINDS):
                errors[ERROR_KINDS[j]] += t.errs[j]
            if t.sleep.count:
                if first_sleep:
                    res.sleep_min, res.sleep_max = t.sleep.vmin, t.sleep.vmax
                    first_sleep = False
                else:
                    res.sleep_min = min(res.sleep_min, t.sleep.vmin)
                    res.sleep_max = max(res.sleep_max, t.sleep.vmax)
                res.sleep_count += t.sleep.count
                res.sleep_sum += t.sleep.vsum
                res.sleep_sumsq += t.sleep.vsumsq
            res.late += t.late
            res.skipped += t.skipped
            res.retries += t.retries
            res.abandoned += t.abandoned
            if t.n_done and t.last_done_ns > last:
                last = t.last_done_ns
            if t.nsecs > maxsec:
                maxsec = t.nsecs
        res.codes = dict(sorted(codes.items()))
        res.overloaded = dict(sorted(over.items()))
        res.errors = {k2: v for k2, v in errors.items() if v}
        res.sockets = [0] * self.nconns
        res.calls_done = [0] * self.nconns
        for i in range(self.nthreads):
            t = self.ts[i]
            for j in range(t.nconns):
                res.sockets[t.conns[j].gidx] = t.conns[j].sockets
                res.calls_done[t.conns[j].gidx] = t.conns[j].done
        # timeline: dense from second 0 to the last second with a completion
        timeline = []
        for k in range(maxsec):
            sec = Second(t=k)
            lat = [0] * TLB
            for i in range(self.nthreads):
                t = self.ts[i]
                if k >= t.nsecs:
                    continue
                sp = &t.secs[k]
                if sp.requests == 0:
                    continue
                sec.requests += sp.requests
                sec.errors += sp.errors
                sec.overloaded += sp.overloaded
                for j in range(t.nslots):
                    if sp.codes[j]:
                        code = t.slot_code[j]
                        sec.codes[code] = sec.codes.get(code, 0) + sp.codes[j]
                if sp.codes[NSLOTS]:
                    sec.codes[0] = sec.codes.get(0, 0) + sp.codes[NSLOTS]
                for j in range(TLB):
                    if sp.lat[j]:
                        lat[j] += sp.lat[j]
            sec.latency = lat
            timeline.append(sec)
        res.timeline = timeline
        end_ns = last if last else self.start_ns
        if self.interrupted:
            if self.sh.stop_ns > end_ns:
                end_ns = self.sh.stop_ns
        if last == 0:
            for i in range(self.nthreads):
                if self.ts[i].exit_ns > end_ns:
                    end_ns = self.ts[i].exit_ns
        res.elapsed_ns = end_ns - self.start_ns
        res.interrupted = bool(self.interrupted)
        res.aborted_on = self.sh.aborted_on if self.sh.aborted_set else None
        if self.logfd >= 0:
            close(self.logfd)
            self.logfd = -1
        return res


def start(cfg):
    """Start a run of ``cfg`` (an :class:`loadgen.engine_api.EngineConfig`) on the C engine."""
    cdef _Handle h = _Handle()
    cdef int nconn = int(cfg.connections)
    cdef int nthr = int(cfg.threads)
    cdef int i
    cdef int j
    cdef int r
    cdef int64_t now
    cdef TState* t
    cdef Conn* c
    cdef sockaddr_storage addr
    cdef int family = 0
    cdef int alen
    cdef uint64_t seed
    if nconn < 1:
        raise UsageError(f"connections must be >= 1, got {nconn}")
    if nthr < 1:
        nthr = 1
    if nthr > nconn:
        nthr = nconn
    calls = tuple(cfg.calls) if cfg.calls else (-1,) * nconn
    offsets = tuple(cfg.offsets) if cfg.offsets else (0.0,) * nconn
    if len(calls) != nconn or len(offsets) != nconn:
        raise UsageError(f"calls/offsets must have one entry per connection ({nconn})")
    if not isinstance(cfg.request, (bytes, bytearray)) or not cfg.request:
        raise UsageError("request must be non-empty bytes")
    if cfg.timeout_s <= 0:
        raise UsageError(f"timeout must be > 0, got {cfg.timeout_s}")
    host_b = str(cfg.host).encode("ascii", "replace")
    memset(&addr, 0, sizeof(addr))
    alen = lg_make_addr(host_b, int(cfg.port), &addr, &family)
    if alen == 0:
        raise UsageError(f"the C engine needs a numeric IP address, got {cfg.host!r}")
    if not (0 < int(cfg.port) < 65536):
        raise UsageError(f"bad port {cfg.port}")
    layout = hdr_layout()
    h.cfg = cfg
    h.req = bytes(cfg.request)
    h.nconns = nconn
    h._lock = threading.Lock()
    h._result = None
    h.interrupted = False
    h.sh = <Shared*>calloc(1, sizeof(Shared))
    if h.sh == NULL:
        raise MemoryError()
    h.ts = <TState**>calloc(nthr, sizeof(TState*))
    if h.ts == NULL:
        raise MemoryError()
    h.nthreads = nthr
    if cfg.access_log_path:
        try:
            h.logfd = os.open(cfg.access_log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC,
                              0o644)
        except OSError as exc:
            raise RunError(f"cannot open the access log {cfg.access_log_path!r}: {exc.strerror}") from exc
    seed = <uint64_t>((int(cfg.seed) if cfg.seed else time.time_ns()) & 0xFFFFFFFFFFFFFFFF)
    timeout_ns = int(cfg.timeout_s * 1e9)
    for i in range(nthr):
        t = <TState*>calloc(1, sizeof(TState))
        if t == NULL:
            raise MemoryError()
        h.ts[i] = t
        t.tid = i
        t.sh = h.sh
        t.epfd = -1
        t.use_pwait2 = 1
        t.logfd = h.logfd
        t.req = h.req
        t.reqlen = len(h.req)
        t.head = bool(cfg.head)
        t.keepalive = bool(cfg.keepalive)
        t.catchup = bool(cfg.catchup)
        t.jitter = bool(cfg.jitter)
        t.stretch = bool(cfg.stretch)
        t.qps_mode = cfg.qps > 0
        t.period_ns = nconn / cfg.qps * 1e9 if cfg.qps > 0 else 0.0
        t.timeout_ns = timeout_ns
        t.scan_ns = max(100_000, min(5_000_000, timeout_ns // 20))
        t.abort_on = int(cfg.abort_on)
        memcpy(&t.addr, &addr, sizeof(addr))
        t.addrlen = alen
        t.family = family
        t.counts_len = layout[0]
        t.unit_mag = layout[1]
        t.sbhcm = layout[2]
        t.sub_mask = layout[3]
        t.rng = (seed ^ (<uint64_t>(i + 1) * 0x9E3779B97F4A7C15ULL)) | 1
        for r in range(NREC):
            t.rec[r].divisor = 1 if r in (R_HDR, R_TOTAL) else 1000
            t.rec[r].counts = <uint64_t*>calloc(t.counts_len, sizeof(uint64_t))
            if t.rec[r].counts == NULL:
                raise MemoryError()
        for j in range(NCODES):
            t.code_slot[j] = -1
        t.nconns = (nconn - i + nthr - 1) // nthr
        t.conns = <Conn*>calloc(t.nconns, sizeof(Conn))
        t.heap_t = <int64_t*>calloc(t.nconns + 1, sizeof(int64_t))
        t.heap_c = <int*>calloc(t.nconns + 1, sizeof(int))
        t.ready = <int*>calloc(t.nconns + 1, sizeof(int))
        t.rbuf = <char*>malloc(RBUF)
        if h.logfd >= 0:
            t.logbuf = <char*>malloc(RBUF)
        if (t.conns == NULL or t.heap_t == NULL or t.heap_c == NULL or t.ready == NULL or t.rbuf == NULL
                or (h.logfd >= 0 and t.logbuf == NULL)):
            raise MemoryError()
        for j in range(t.nconns):
            c = &t.conns[j]
            c.fd = -1
            c.gidx = i + j * nthr
            c.calls = int(calls[c.gidx])
            c.offset_ns = int(float(offsets[c.gidx]) * 1e9)
            c.state = S_IDLE
    # one clock for all threads
    h.start_wall = time.time()
    now = lg_mono_ns()
    wall0 = lg_wall_ns()
    h.start_ns = now
    for i in range(nthr):
        t = h.ts[i]
        t.start_ns = now
        t.wall0_ns = wall0
        for j in range(t.nconns):
            c = &t.conns[j]
            if cfg.end_s > 0:
                c.end_ns = now + int(cfg.end_s * 1e9)
    h.threads = [threading.Thread(target=h._run, args=(i,), name=f"loadgen-c-{i}", daemon=True)
                 for i in range(nthr)]
    for th in h.threads:
        th.start()
    return h

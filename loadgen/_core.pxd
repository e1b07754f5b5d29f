# cython: language_level=3
"""C declarations used by the C engine (:mod:`loadgen._core`): Linux sockets, epoll, clocks.

Only ``extern`` declarations of system headers and a few verbatim C helpers live here; the
engine's own structs and logic are in ``_core.pyx``. Nothing here touches Python objects.
"""

from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef extern from "<sys/types.h>" nogil:
    ctypedef long ssize_t


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t

    struct sockaddr:
        pass

    struct sockaddr_storage:
        pass

    int socket(int domain, int type, int protocol)
    int connect(int fd, const sockaddr* addr, socklen_t len)
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    int setsockopt(int fd, int level, int name, const void* val, socklen_t len)
    int getsockopt(int fd, int level, int name, void* val, socklen_t* len)

    int SOCK_STREAM
    int SOCK_NONBLOCK
    int SOCK_CLOEXEC
    int SOL_SOCKET
    int SO_ERROR
    int MSG_NOSIGNAL


cdef extern from "<netinet/in.h>" nogil:
    int IPPROTO_TCP


cdef extern from "<netinet/tcp.h>" nogil:
    int TCP_NODELAY


cdef extern from "<unistd.h>" nogil:
    int close(int fd)
    ssize_t write(int fd, const void* buf, size_t n)


cdef extern from "<sys/epoll.h>" nogil:
    union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64

    struct epoll_event:
        uint32_t events
        epoll_data_t data

    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* ev)

    int EPOLL_CLOEXEC
    int EPOLL_CTL_ADD
    int EPOLL_CTL_MOD
    int EPOLL_CTL_DEL
    uint32_t EPOLLIN
    uint32_t EPOLLOUT
    uint32_t EPOLLERR
    uint32_t EPOLLHUP


cdef extern from "<errno.h>" nogil:
    int errno
    int EAGAIN
    int EWOULDBLOCK
    int EINTR
    int EINPROGRESS
    int ECONNREFUSED
    int ECONNRESET
    int EPIPE


cdef extern from "<string.h>" nogil:
    char* strerror(int errnum)


cdef extern from "<strings.h>" nogil:
    int strncasecmp(const char* a, const char* b, size_t n)


cdef extern from *:
    """
    #include <stdint.h>
    #include <time.h>
    #include <errno.h>
    #include <unistd.h>
    #include <sys/syscall.h>
    #include <sys/epoll.h>
    #include <sys/prctl.h>
    #include <sys/socket.h>
    #include <netinet/in.h>
    #include <arpa/inet.h>

    static inline int64_t lg_mono_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000LL + (int64_t)ts.tv_nsec;
    }
    static inline int64_t lg_wall_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000000LL + (int64_t)ts.tv_nsec;
    }
    static inline int lg_load(int* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static inline void lg_store(int* p, int v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
    static inline int lg_cas(int* p, int expect, int v) {
        return __atomic_compare_exchange_n(p, &expect, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    }
    static inline int lg_clz64(uint64_t v) { return __builtin_clzll(v); }

    /* epoll wait with a nanosecond timeout: epoll_pwait2 (Linux >= 5.11), else ms rounded up. */
    static int lg_epoll_wait_ns(int epfd, struct epoll_event* ev, int n, int64_t ns, int* use2) {
        if (ns < 0) ns = 0;
    #ifdef SYS_epoll_pwait2
        if (*use2) {
            struct timespec ts;
            ts.tv_sec = (time_t)(ns / 1000000000LL);
            ts.tv_nsec = (long)(ns % 1000000000LL);
            int r = (int)syscall(SYS_epoll_pwait2, epfd, ev, n, &ts, NULL, (size_t)8);
            if (r >= 0 || errno != ENOSYS) return r;
            *use2 = 0;
        }
    #endif
        return epoll_wait(epfd, ev, n, (int)((ns + 999999LL) / 1000000LL));
    }
    static inline void lg_fine_timer_slack(void) { prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); }

    /* Fill a sockaddr from a numeric IPv4/IPv6 address; returns the length or 0. */
    static int lg_make_addr(const char* host, int port, struct sockaddr_storage* ss, int* family) {
        struct sockaddr_in* a4 = (struct sockaddr_in*)ss;
        struct sockaddr_in6* a6 = (struct sockaddr_in6*)ss;
        if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
            a4->sin_family = AF_INET; a4->sin_port = htons((uint16_t)port); *family = AF_INET;
            return (int)sizeof(struct sockaddr_in);
        }
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
            a6->sin6_family = AF_INET6; a6->sin6_port = htons((uint16_t)port); *family = AF_INET6;
            return (int)sizeof(struct sockaddr_in6);
        }
        return 0;
    }
    """
    int64_t lg_mono_ns() nogil
    int64_t lg_wall_ns() nogil
    int lg_load(int* p) nogil
    void lg_store(int* p, int v) nogil
    int lg_cas(int* p, int expect, int v) nogil
    int lg_clz64(uint64_t v) nogil
    int lg_epoll_wait_ns(int epfd, epoll_event* ev, int n, int64_t ns, int* use2) nogil
    void lg_fine_timer_slack() nogil
    int lg_make_addr(const char* host, int port, sockaddr_storage* ss, int* family) nogil

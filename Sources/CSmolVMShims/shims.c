#define _GNU_SOURCE
#include "CSmolVMShims.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <time.h>
#include <net/route.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pty.h>
#include <spawn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static void child_fail(int report_fd, int err) {
    ssize_t ignored = write(report_fd, &err, sizeof(err));
    (void)ignored;
    _exit(127);
}

static int spawn_posix(const char *path, char *const argv[], char *const envp[],
                       const int *fd_map, int fd_count, const char *cwd, int flags,
                       pid_t *pid_out) {
    // Sources that are themselves in the target range are first duplicated
    // above it, so the dup2 actions, run in order, never clobber one.
    int temporary[64];
    int sources[64];
    int err = 0;
    if (fd_count > 64) return EINVAL;
    for (int i = 0; i < fd_count; i++) {
        temporary[i] = -1;
        sources[i] = fd_map[i];
        if (fd_map[i] >= 0 && fd_map[i] < fd_count) {
            temporary[i] = fcntl(fd_map[i], F_DUPFD_CLOEXEC, fd_count);
            if (temporary[i] < 0) { err = errno; goto cleanup; }
            sources[i] = temporary[i];
        }
    }
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    for (int i = 0; i < fd_count; i++) {
        if (sources[i] < 0) posix_spawn_file_actions_addclose(&actions, i);
        else posix_spawn_file_actions_adddup2(&actions, sources[i], i);
    }
    posix_spawn_file_actions_addclosefrom_np(&actions, fd_count);
    if (cwd && cwd[0]) posix_spawn_file_actions_addchdir_np(&actions, cwd);
    short attr_flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (flags & SMOLVM_SPAWN_NEW_SESSION) attr_flags |= POSIX_SPAWN_SETSID;
    else if (flags & SMOLVM_SPAWN_PROCESS_GROUP) {
        attr_flags |= POSIX_SPAWN_SETPGROUP;
        posix_spawnattr_setpgroup(&attr, 0);
    }
    posix_spawnattr_setflags(&attr, attr_flags);
    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &all);
    err = posix_spawn(pid_out, path, &actions, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
cleanup:
    for (int i = 0; i < fd_count; i++) {
        if (temporary[i] >= 0) close(temporary[i]);
    }
    return err;
}

int smolvm_spawn(const char *path, char *const argv[], char *const envp[],
                 const int *fd_map, int fd_count, const char *cwd, int flags,
                 pid_t *pid_out) {
    if (!(flags & (SMOLVM_SPAWN_DIE_WITH_PARENT | SMOLVM_SPAWN_CONTROLLING_TTY | SMOLVM_SPAWN_FORCE_FORK)))
        return spawn_posix(path, argv, envp, fd_map, fd_count, cwd, flags, pid_out);
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(report[0]);
        close(report[1]);
        return err;
    }
    if (pid == 0) {
        // Only async-signal-safe calls from here on.
        if (flags & SMOLVM_SPAWN_DIE_WITH_PARENT) {
            if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(report[1], errno);
            // The parent may have died between fork and prctl.
            if (getppid() != parent) _exit(137);
        }
        if (flags & SMOLVM_SPAWN_NEW_SESSION) {
            if (setsid() < 0) child_fail(report[1], errno);
        } else if (flags & SMOLVM_SPAWN_PROCESS_GROUP) {
            if (setpgid(0, 0) != 0) child_fail(report[1], errno);
        }
        sigset_t empty;
        sigemptyset(&empty);
        sigprocmask(SIG_SETMASK, &empty, NULL);
        for (int sig = 1; sig < NSIG; sig++) {
            if (sig == SIGKILL || sig == SIGSTOP) continue;
            signal(sig, SIG_DFL);
        }
        // Move every source above the target range first so dup2 never clobbers
        // a source that is still needed.
        int moved[64];
        if (fd_count > 64) child_fail(report[1], EINVAL);
        int floor = fd_count > report[1] ? fd_count : report[1] + 1;
        for (int i = 0; i < fd_count; i++) {
            if (fd_map[i] < 0) { moved[i] = -1; continue; }
            moved[i] = fcntl(fd_map[i], F_DUPFD_CLOEXEC, floor);
            if (moved[i] < 0) child_fail(report[1], errno);
        }
        for (int i = 0; i < fd_count; i++) {
            if (moved[i] < 0) {
                close(i);
                continue;
            }
            if (dup2(moved[i], i) < 0) child_fail(report[1], errno);
        }
        if ((flags & SMOLVM_SPAWN_CONTROLLING_TTY) && ioctl(0, TIOCSCTTY, 0) != 0)
            child_fail(report[1], errno);
        // Close everything else except the report pipe, which is close-on-exec.
        for (int fd = fd_count; fd < 1024; fd++) {
            if (fd != report[1]) close(fd);
        }
        syscall(SYS_close_range, 1024, ~0U, 0);
        if (cwd && cwd[0] && chdir(cwd) != 0) child_fail(report[1], errno);
        execve(path, argv, envp);
        child_fail(report[1], errno);
    }
    close(report[1]);
    int child_err = 0;
    ssize_t n;
    do {
        n = read(report[0], &child_err, sizeof(child_err));
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == sizeof(child_err)) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        return child_err;
    }
    *pid_out = pid;
    return 0;
}

int smolvm_reboot_restart(void) { return reboot(RB_AUTOBOOT) == 0 ? 0 : errno; }
int smolvm_reboot_power_off(void) { return reboot(RB_POWER_OFF) == 0 ? 0 : errno; }

int smolvm_vsock_listen(unsigned int port) {
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct sockaddr_vm addr;
    memset(&addr, 0, sizeof(addr));
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = VMADDR_CID_ANY;
    addr.svm_port = port;
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 16) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

int smolvm_signalfd_init(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGIO);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) return -errno;
    int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

int smolvm_enable_sigio(int fd) {
    if (fcntl(fd, F_SETOWN, getpid()) != 0) return -errno;
    // F_SETSIG fills in si_fd and si_code, so the reader can tell a host
    // opening or closing the port (POLL_OUT) from data arriving (POLL_IN).
    if (fcntl(fd, F_SETSIG, SIGIO) != 0) return -errno;
    return 0;
}

int smolvm_set_async(int fd, int on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    int wanted = on ? (flags | O_ASYNC) : (flags & ~O_ASYNC);
    if (wanted != flags && fcntl(fd, F_SETFL, wanted) != 0) return -errno;
    return 0;
}

int smolvm_peer_connected(int fd) {
    struct pollfd entry = {.fd = fd, .events = POLLIN};
    int n;
    do {
        n = poll(&entry, 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    return (entry.revents & POLLHUP) ? 0 : 1;
}

int smolvm_signalfd_read(int fd) {
    int source, code;
    return smolvm_signalfd_read_info(fd, &source, &code);
}

int smolvm_signalfd_read_info(int fd, int *source, int *code) {
    struct signalfd_siginfo info;
    ssize_t n;
    do {
        n = read(fd, &info, sizeof(info));
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errno == EAGAIN ? 0 : -errno;
    if (n != sizeof(info)) return 0;
    *source = info.ssi_fd;
    *code = info.ssi_code;
    return (int)info.ssi_signo;
}

int smolvm_openpty(int *master, int *slave, unsigned short rows, unsigned short cols) {
    struct winsize ws;
    memset(&ws, 0, sizeof(ws));
    ws.ws_row = rows ? rows : 24;
    ws.ws_col = cols ? cols : 80;
    if (openpty(master, slave, NULL, NULL, &ws) != 0) return errno;
    fcntl(*master, F_SETFD, FD_CLOEXEC);
    fcntl(*slave, F_SETFD, FD_CLOEXEC);
    return 0;
}

int smolvm_set_window_size(int fd, unsigned short rows, unsigned short cols) {
    struct winsize ws;
    memset(&ws, 0, sizeof(ws));
    ws.ws_row = rows;
    ws.ws_col = cols;
    return ioctl(fd, TIOCSWINSZ, &ws) == 0 ? 0 : errno;
}

unsigned long long smolvm_process_start_time(pid_t pid) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    p++;
    // p now points before field 3; start time is field 22.
    int field = 2;
    while (*p && field < 22) {
        if (*p == ' ') field++;
        p++;
    }
    return strtoull(p, NULL, 10);
}

int smolvm_configure_interface(const char *name, uint32_t address_be, int prefix, uint32_t gateway_be) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    int err = 0;
    if (address_be != 0) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = address_be;
        if (ioctl(fd, SIOCSIFADDR, &ifr) != 0) { err = errno; goto out; }
        uint32_t mask = prefix == 0 ? 0 : htonl(~((1u << (32 - prefix)) - 1));
        sin->sin_addr.s_addr = mask;
        if (ioctl(fd, SIOCSIFNETMASK, &ifr) != 0) { err = errno; goto out; }
    }
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) { err = errno; goto out; }
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) { err = errno; goto out; }
    if (gateway_be != 0) {
        struct rtentry route;
        memset(&route, 0, sizeof(route));
        struct sockaddr_in *dst = (struct sockaddr_in *)&route.rt_dst;
        struct sockaddr_in *gw = (struct sockaddr_in *)&route.rt_gateway;
        struct sockaddr_in *mask = (struct sockaddr_in *)&route.rt_genmask;
        dst->sin_family = AF_INET;
        gw->sin_family = AF_INET;
        gw->sin_addr.s_addr = gateway_be;
        mask->sin_family = AF_INET;
        route.rt_flags = RTF_UP | RTF_GATEWAY;
        if (ioctl(fd, SIOCADDRT, &route) != 0 && errno != EEXIST) { err = errno; goto out; }
    }
out:
    close(fd);
    return err;
}

int smolvm_set_mac_address(const char *name, const uint8_t mac[6], int *went_down) {
    *went_down = 0;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    memcpy(ifr.ifr_hwaddr.sa_data, mac, 6);
    int err = 0;
    if (ioctl(fd, SIOCSIFHWADDR, &ifr) == 0) goto out;
    if (errno != EBUSY) { err = errno; goto out; }
    // Taking the link down drops its addresses and routes: only when the driver insists.
    struct ifreq flags;
    memset(&flags, 0, sizeof(flags));
    strncpy(flags.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFFLAGS, &flags) != 0) { err = errno; goto out; }
    flags.ifr_flags &= ~IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &flags) != 0) { err = errno; goto out; }
    *went_down = 1;
    if (ioctl(fd, SIOCSIFHWADDR, &ifr) != 0) { err = errno; goto out; }
out:
    close(fd);
    return err;
}

int smolvm_add_entropy(const uint8_t *bytes, int length) {
    if (length < 0 || length > 4096) return EINVAL;
    int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    struct rand_pool_info *info = calloc(1, sizeof(*info) + (size_t)length + 4);
    if (info == NULL) { close(fd); return ENOMEM; }
    info->entropy_count = length * 8;
    info->buf_size = length;
    memcpy(info->buf, bytes, (size_t)length);
    int err = 0;
    if (ioctl(fd, RNDADDENTROPY, info) != 0) err = errno;
    if (err == 0 && ioctl(fd, RNDRESEEDCRNG) != 0) err = errno;
    free(info);
    close(fd);
    return err;
}

int smolvm_set_realtime(int64_t seconds, int64_t nanoseconds) {
    struct timespec value = { .tv_sec = seconds, .tv_nsec = nanoseconds };
    return clock_settime(CLOCK_REALTIME, &value) == 0 ? 0 : errno;
}

int smolvm_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int smolvm_accept(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC); }

int smolvm_get_window_size(int fd, unsigned short *rows, unsigned short *cols) {
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) != 0) return errno;
    *rows = ws.ws_row;
    *cols = ws.ws_col;
    return 0;
}

unsigned long smolvm_termios_size(void) { return sizeof(struct termios); }

int smolvm_make_raw(int fd, void *saved) {
    struct termios current;
    if (tcgetattr(fd, &current) != 0) return errno;
    memcpy(saved, &current, sizeof(current));
    cfmakeraw(&current);
    return tcsetattr(fd, TCSANOW, &current) == 0 ? 0 : errno;
}

int smolvm_restore_terminal(int fd, const void *saved) {
    return tcsetattr(fd, TCSANOW, (const struct termios *)saved) == 0 ? 0 : errno;
}

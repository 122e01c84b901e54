#ifndef CSMOLVM_SHIMS_H
#define CSMOLVM_SHIMS_H

#include <sys/types.h>
#include <stdint.h>

/// Flags for smolvm_spawn.
enum {
    /// Put the child in a new process group of its own (setpgid(0, 0)).
    SMOLVM_SPAWN_PROCESS_GROUP = 1 << 0,
    /// Start a new session (setsid()); implies a new process group.
    SMOLVM_SPAWN_NEW_SESSION = 1 << 1,
    /// Deliver SIGKILL to the child when the spawning thread's process exits
    /// (prctl(PR_SET_PDEATHSIG)).
    SMOLVM_SPAWN_DIE_WITH_PARENT = 1 << 2,
    /// Make child fd 0 the controlling terminal (ioctl(TIOCSCTTY)); needs NEW_SESSION.
    SMOLVM_SPAWN_CONTROLLING_TTY = 1 << 3,
    /// Use fork(2) even where posix_spawn(3) would do (the benchmark's raw floor).
    SMOLVM_SPAWN_FORCE_FORK = 1 << 4,
};

/// Starts a program: posix_spawn(3) (clone with CLONE_VM|CLONE_VFORK, which
/// copies no page tables) unless the flags need fork(2) + execve(2), with a file-descriptor map: child fd i becomes parent fd
/// fd_map[i] (or is closed when fd_map[i] < 0); every other descriptor is closed.
/// Signal mask and dispositions are reset to defaults in the child.
/// Returns 0 and stores the pid, or an errno (from fork, or from the child's exec,
/// chdir or dup2, reported back over a close-on-exec pipe).
int smolvm_spawn(const char *path, char *const argv[], char *const envp[],
                 const int *fd_map, int fd_count, const char *cwd, int flags,
                 pid_t *pid_out);

/// reboot(2) with one of RB_AUTOBOOT / RB_POWER_OFF.
int smolvm_reboot_restart(void);
int smolvm_reboot_power_off(void);

/// A socket bound and listening on AF_VSOCK, any CID, the given port.
/// Returns the fd, or -errno.
int smolvm_vsock_listen(unsigned int port);

/// signalfd(2) for SIGCHLD, SIGTERM and SIGINT, with those blocked in the caller.
int smolvm_signalfd_init(void);

/// Reads one signalfd record; returns the signal number, 0 when none, -errno on error.
/// `fcntl(F_SETOWN, F_SETSIG)`: SIGIO for this fd goes to this process and
/// carries the fd and the reason; `smolvm_set_async` turns it on and off.
int smolvm_enable_sigio(int fd);
/// Sets or clears `O_ASYNC` (for a virtio-serial port: SIGIO when the host end
/// opens or closes, and when data arrives).
int smolvm_set_async(int fd, int on);
/// 1 when `poll` shows no hang-up on `fd` now, 0 when it does, -errno on error.
int smolvm_peer_connected(int fd);
int smolvm_signalfd_read(int fd);
/// Like `smolvm_signalfd_read`, also giving the signal's `ssi_fd` and `ssi_code`.
int smolvm_signalfd_read_info(int fd, int *source, int *code);

/// Opens a new pseudo-terminal pair; returns 0 or errno.
int smolvm_openpty(int *master, int *slave, unsigned short rows, unsigned short cols);

/// TIOCGWINSZ on a terminal; returns 0 or errno.
int smolvm_get_window_size(int fd, unsigned short *rows, unsigned short *cols);

/// Puts a terminal in raw mode (cfmakeraw), storing the previous settings in
/// `saved` (at least smolvm_termios_size() bytes); returns 0 or errno.
int smolvm_make_raw(int fd, void *saved);
/// Restores settings saved by smolvm_make_raw.
int smolvm_restore_terminal(int fd, const void *saved);
unsigned long smolvm_termios_size(void);

/// TIOCSWINSZ on a terminal.
int smolvm_set_window_size(int fd, unsigned short rows, unsigned short cols);

/// Current process start time in clock ticks since boot (field 22 of /proc/PID/stat),
/// or 0 when the process does not exist.
unsigned long long smolvm_process_start_time(pid_t pid);

/// ioctl-based network setup used by the guest agent: bring `name` up with an
/// IPv4 address/prefix, and add a default route through `gateway` (0 for none).
int smolvm_configure_interface(const char *name, uint32_t address_be, int prefix, uint32_t gateway_be);

/// Sets an interface's MAC address (SIOCSIFHWADDR). virtio-net changes it on
/// a live link; a driver that refuses (EBUSY) gets it with the link taken
/// down, which `*went_down` reports: the link is then left down, its
/// addresses and routes gone. Returns 0 or an errno.
int smolvm_set_mac_address(const char *name, const uint8_t mac[6], int *went_down);

/// Mixes `length` bytes into the kernel's entropy pool, credits them
/// (RNDADDENTROPY on /dev/urandom) and forces the CRNG to reseed
/// (RNDRESEEDCRNG), so the next getrandom(2) cannot repeat a restored state.
/// Returns 0 or an errno.
int smolvm_add_entropy(const uint8_t *bytes, int length);

/// clock_settime(CLOCK_REALTIME); returns 0 or an errno.
int smolvm_set_realtime(int64_t seconds, int64_t nanoseconds);

/// pipe2(2) with O_CLOEXEC; returns 0 or -1 with errno set.
int smolvm_pipe(int fds[2]);

/// accept4(2) with SOCK_CLOEXEC.
int smolvm_accept(int fd);

#endif

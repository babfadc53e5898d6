/*
 * LD_PRELOAD shim that lets Debian's real C xenstored (xen-utils-4.17) run in
 * user space on a machine without Xen, for the sandbox and the tests.
 *
 * xenstored only needs a handful of hypervisor calls to succeed at start-up:
 * it opens the control interface, lists domains, binds the VIRQ_DOM_EXC event
 * channel and maps dom0's ring page. Every answer here is the quietest one that
 * lets it go on: no domains, an event channel that never fires, anonymous
 * memory for grant mappings. Everything else (the store, permissions, quotas,
 * transactions, watches, the Unix socket) is xenstored's own code.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

/* Opaque handles: xenstored only checks them for NULL and passes them back. */
static int dummy_handle;
static int evtchn_fd = -1;

void *xc_interface_open(void *logger, void *dombuild_logger, unsigned open_flags)
{
    (void)logger; (void)dombuild_logger; (void)open_flags;
    return &dummy_handle;
}

int xc_interface_close(void *xch) { (void)xch; return 0; }

/* No guest domains exist: dom0 (the socket clients) is all there is. */
int xc_domain_getinfo(void *xch, uint32_t first, unsigned int max, void *info)
{
    (void)xch; (void)first; (void)max; (void)info;
    return 0;
}

static void *evtchn_open_common(void)
{
    if (evtchn_fd < 0)
        evtchn_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return evtchn_fd < 0 ? NULL : &dummy_handle;
}

void *xenevtchn_open(void *logger, unsigned open_flags)
{
    (void)logger; (void)open_flags;
    return evtchn_open_common();
}

void *xenevtchn_fdopen(void *logger, int fd, unsigned open_flags)
{
    (void)logger; (void)fd; (void)open_flags;
    return evtchn_open_common();
}

int xenevtchn_fd(void *xce) { (void)xce; return evtchn_fd; }

/* Local ports are arbitrary but distinct from "no port" (negative). */
static int next_port = 1;

int xenevtchn_bind_virq(void *xce, unsigned int virq)
{
    (void)xce; (void)virq;
    return next_port++;
}

int xenevtchn_bind_interdomain(void *xce, uint32_t domid, uint32_t remote_port)
{
    (void)xce; (void)domid; (void)remote_port;
    return next_port++;
}

int xenevtchn_notify(void *xce, uint32_t port) { (void)xce; (void)port; return 0; }
int xenevtchn_pending(void *xce) { (void)xce; errno = EAGAIN; return -1; }
int xenevtchn_unmask(void *xce, uint32_t port) { (void)xce; (void)port; return 0; }
int xenevtchn_unbind(void *xce, uint32_t port) { (void)xce; (void)port; return 0; }

void *xengnttab_open(void *logger, unsigned open_flags)
{
    (void)logger; (void)open_flags;
    return &dummy_handle;
}

int xengnttab_close(void *xgt) { (void)xgt; return 0; }
int xengnttab_set_max_grants(void *xgt, uint32_t count) { (void)xgt; (void)count; return 0; }

void *xengnttab_map_grant_ref(void *xgt, uint32_t domid, uint32_t ref, int prot)
{
    (void)xgt; (void)domid; (void)ref; (void)prot;
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return page == MAP_FAILED ? NULL : page;
}

int xengnttab_unmap(void *xgt, void *start_address, uint32_t count)
{
    (void)xgt;
    return munmap(start_address, 4096 * (size_t)count);
}

/* /proc/xen/xsd_port holds dom0's xenstore event channel; xsd_kva is its ring page. */
static int memfd_with(const char *name, const char *content, size_t size)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (ftruncate(fd, (off_t)size) < 0 ||
        (content && pwrite(fd, content, strlen(content), 0) < 0)) {
        close(fd);
        return -1;
    }
    return fd;
}

typedef int (*open_fn)(const char *, int, ...);

static int shim_open(const char *symbol, const char *path, int flags, va_list ap)
{
    if (strcmp(path, "/proc/xen/xsd_port") == 0)
        return memfd_with("xsd_port", "1", 1);
    if (strcmp(path, "/proc/xen/xsd_kva") == 0)
        return memfd_with("xsd_kva", NULL, 4096);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE))
        mode = (mode_t)va_arg(ap, int);
    open_fn real = (open_fn)dlsym(RTLD_NEXT, symbol);
    return real(path, flags, mode);
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int fd = shim_open("open", path, flags, ap);
    va_end(ap);
    return fd;
}

int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int fd = shim_open("open64", path, flags, ap);
    va_end(ap);
    return fd;
}

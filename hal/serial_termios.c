/* hal/serial_termios.c — the POSIX termios back end: pseudo-terminals (the simulator) and any
 * tty whose driver libserialport cannot handle. Standard Linux baud constants only; other rates
 * need the libserialport back end (termios2/BOTHER). */
#include "hal/serial_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "runtime/status.h"

static speed_t baud_const(int baud)
{
    static const struct { int rate; speed_t c; } table[] = {
        { 9600, B9600 }, { 19200, B19200 }, { 38400, B38400 }, { 57600, B57600 },
        { 115200, B115200 }, { 230400, B230400 }, { 460800, B460800 }, { 500000, B500000 },
        { 576000, B576000 }, { 921600, B921600 }, { 1000000, B1000000 }, { 1152000, B1152000 },
        { 1500000, B1500000 }, { 2000000, B2000000 }, { 2500000, B2500000 },
        { 3000000, B3000000 }, { 3500000, B3500000 }, { 4000000, B4000000 },
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (table[i].rate == baud) return table[i].c;
    return 0;
}

int rtv_serial_termios_open(rtv_serial *s, const char *path, int baud)
{
    speed_t sp = baud_const(baud);
    if (!sp)
        return rtv_fail(RTV_E_UNSUPPORTED, "port %s: baud %d is not a standard termios rate "
                        "(the termios back end takes 9600..4000000 standard rates; real adapters "
                        "use libserialport, which can set any rate)", path, baud);
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return rtv_serial_open_error(path, errno);
    struct termios t;
    if (tcgetattr(fd, &t)) {
        int e = errno;
        close(fd);
        return rtv_fail(RTV_E_DEVICE, "port %s: not a terminal (tcgetattr: %s)", path, strerror(e));
    }
    cfmakeraw(&t); /* no echo, no CR/LF mapping: 0x0A/0x0D are ordinary packet bytes */
    t.c_cflag &= ~(CSTOPB | PARENB | CRTSCTS | CSIZE);
    t.c_cflag |= CS8 | CLOCAL | CREAD;
    t.c_iflag &= ~(IXON | IXOFF | IXANY);
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    cfsetispeed(&t, sp);
    cfsetospeed(&t, sp);
    if (tcsetattr(fd, TCSANOW, &t)) {
        int e = errno;
        close(fd);
        return rtv_fail(RTV_E_OS, "port %s: tcsetattr (8N1 raw, %d baud): %s", path, baud, strerror(e));
    }
    ioctl(fd, TIOCEXCL); /* one opener at a time; harmless if refused */
    s->fd = fd;
    s->backend = RTV_SERIAL_TERMIOS;
    return RTV_OK;
}

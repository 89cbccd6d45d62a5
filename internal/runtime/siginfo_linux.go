package runtime

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var deadlinePast = time.Unix(1, 0)

// siginfoChld is the SIGCHLD layout of siginfo_t on Linux (64-bit).
type siginfoChld struct {
	Signo  int32
	Errno  int32
	Code   int32
	_      int32
	Pid    int32
	UID    uint32
	Status int32
}

func pidOf(info *unix.Siginfo) int {
	return int((*siginfoChld)(unsafe.Pointer(info)).Pid)
}

const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

func exitOf(info *unix.Siginfo) Exit {
	c := (*siginfoChld)(unsafe.Pointer(info))
	switch c.Code {
	case cldExited:
		return Exit{Code: int(c.Status), Known: true}
	case cldKilled, cldDumped:
		return Exit{Code: 128 + int(c.Status), Signal: int(c.Status), Known: true}
	}
	return Exit{Known: false}
}

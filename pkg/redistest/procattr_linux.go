package redistest

import "syscall"

// childAttr makes a redis-server die with the test process that started
// it, even when that process exits without cleaning up (log.Fatal in an
// example, a panic, a killed test binary).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

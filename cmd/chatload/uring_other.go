//go:build !linux

package main

import "errors"

// uring is Linux's io_uring; elsewhere the floor has write(2) only.
type uring struct{}

func newURing(uint32) (*uring, error) { return nil, errors.New("io_uring is Linux only") }

func (r *uring) Close() {}

func (r *uring) sendAll([]int, []byte, []int32) error { return errors.New("io_uring is Linux only") }

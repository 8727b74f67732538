// Package fdstat counts a Linux process's open file descriptors by what
// they point to, read from /proc/<pid>/fd, so that a leak shows its kind:
// SQLite files, sockets, pipes, anonymous inodes (epoll, eventfd, timerfd)
// or plain files. process_open_fds says that descriptors leak; the counts
// by type say which.
//
// A Counter reads the directory once per Count, with one readlinkat per
// descriptor, and allocates nothing. It keeps a descriptor of the directory
// open, rewinding it for each Count, until Close. NewCounter counts this process; the
// paths given to it (a database and its -wal, -shm and -journal) count as
// type sqlite, and every other path as file. NewCounterFor counts another
// process, through its /proc/<pid>/fd. A Collector exports the counts as
// worker_open_fds{type} at scrape time, with the namespace an option.
//
// It works on Linux only: other systems have no /proc/<pid>/fd.
//
// The API is v0: it may change until 1.0.
package fdstat

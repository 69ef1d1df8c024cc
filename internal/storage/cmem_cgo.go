//go:build cgo

package storage

/*
#include <stdlib.h>
#include <time.h>
static long long tandemThreadNanos(void) {
	struct timespec ts;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
#ifdef __GLIBC__
#include <malloc.h>
static void tandemTuneMalloc(int arenas, int mmapThreshold) {
	mallopt(M_ARENA_MAX, arenas);
	mallopt(M_MMAP_THRESHOLD, mmapThreshold);
}
// tandemMallocTrim trims and stores the CPU time it took in *nanos.
static int tandemMallocTrim(long long *nanos) {
	long long t0 = tandemThreadNanos();
	int r = malloc_trim(0);
	*nanos = tandemThreadNanos() - t0;
	return r;
}
#else
static void tandemTuneMalloc(int arenas, int mmapThreshold) {}
static int tandemMallocTrim(long long *nanos) { *nanos = 0; return 0; }
#endif
*/
import "C"

import "time"

// cTuneMalloc sets glibc's arena count and a fixed mmap threshold.
func cTuneMalloc(arenas, mmapThreshold int) {
	C.tandemTuneMalloc(C.int(arenas), C.int(mmapThreshold))
}

// cMallocTrim gives free pages inside the C allocator's arenas back to
// the OS; true if it released any. cpu is the CPU time it took.
func cMallocTrim() (released bool, cpu time.Duration) {
	var nanos C.longlong
	released = C.tandemMallocTrim(&nanos) != 0
	return released, time.Duration(nanos)
}

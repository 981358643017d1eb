/* fuzz_rdv.c - what a rank accepts from the network during the rendezvous (comm_rdv.c, compiled in):
 * rank 0 reads registration lines from any caller on its port (parse_reg), and every other rank reads
 * rank 0's answer (read_reply, here from a socketpair holding the input).  Input byte 0 picks the
 * reader, byte 1 the world size; the rest is what arrives on the wire. */
#include "fuzz.h"
#include <sys/socket.h>
#include "comm_rdv.c"

static void reply(const uint8_t *data, size_t size, int world)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	int big = 1 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	if (size && send(sv[0], data, size, MSG_NOSIGNAL) != (ssize_t)size)
		abort(); /* inputs are capped well below the socket buffer (run.sh: -max_len) */
	close(sv[0]);
	struct tr_peer *tab = NULL;
	char nonce[64], err[512];
	if (read_reply(sv[1], world, tr_now() + 5, &tab, nonce, err, sizeof(err)) == 0) {
		for (int i = 0; i < world; i++)
			if (!tab[i].host[0] || !tab[i].addr[0])
				abort();
		free(tab);
	} else if (!err[0])
		abort();
	close(sv[1]);
}

static void registration(const uint8_t *data, size_t size, int world)
{
	/* as tr_rdv_serve: one line of at most LINE_MAX_RDV - 1 bytes, cut at its newline, that starts with
	 * "MOE-RDV1 " */
	char line[LINE_MAX_RDV];
	size_t n = size < sizeof(line) - 1 ? size : sizeof(line) - 1;
	memcpy(line, data, n);
	line[n] = 0;
	char *nl = strchr(line, '\n');
	if (nl)
		*nl = 0;
	if (strncmp(line, "MOE-RDV1 ", 9))
		return;
	int rank = -1;
	struct tr_peer pe;
	char ext[TR_ADDR_LEN], why[320];
	int rc = parse_reg(line, world, &rank, &pe, ext, why, sizeof(why));
	if (rc == 0 && (rank <= 0 || rank >= world || pe.port <= 0 || pe.port > 65535))
		abort();
	if (rc != 0 && !why[0])
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	int which = data[0] & 1, world = 1 + data[1] % 64;
	if (which)
		reply(data + 2, size - 2, world);
	else
		registration(data + 2, size - 2, world);
	return 0;
}

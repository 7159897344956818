import socket, sys, struct, time
# capture UDP datagrams on given ports into a length-prefixed file: [u8 port_index][u16 len][bytes]
ports = [int(p) for p in sys.argv[2:]]
socks = []
for p in ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', p)); s.settimeout(0.05); socks.append(s)
out = open(sys.argv[1], 'wb')
deadline = time.time() + 6
import select
n = 0
while time.time() < deadline:
    r, _, _ = select.select(socks, [], [], 0.2)
    for s in r:
        d = s.recv(65535)
        out.write(struct.pack('>BH', socks.index(s), len(d)) + d); n += 1
print(n, 'datagrams')

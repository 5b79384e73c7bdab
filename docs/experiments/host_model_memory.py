"""Host RSS while a 250 MiB model is uploaded and then downloaded by 4
clients at once (issue 17, item 6). Starts `nasflat-host serve` on a
temporary data dir; CHECKPOINT_DIR should hold a pretrained checkpoint for
`--pretrain-epochs 1 --source-samples 2` (any host test leaves one in
target/tmp/ckpt-*), so start-up does not pretrain while RSS is sampled.
Usage: python3 host_model_memory.py HOST_BINARY CHECKPOINT_DIR"""
import json, os, subprocess, sys, tempfile, threading, time, urllib.request

host_bin, ckpt = sys.argv[1], sys.argv[2]
MB = 250
def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7f; v >>= 7
        if v: out.append(b | 0x80)
        else: out.append(b); return bytes(out)
def field(n, body): return varint(n << 3 | 2) + varint(len(body)) + body

tmp = tempfile.mkdtemp()
model = os.path.join(tmp, "big.onnx")
with open(model, "wb") as f:
    node = field(4, b"Relu")
    filler = bytes(MB << 20)
    graph = field(1, node) + field(5, filler) + field(12, field(1, b"y"))
    f.write(b"\x08" + varint(8) + field(7, graph) + field(8, b"\x10\x11"))
size = os.path.getsize(model)
p = subprocess.Popen([host_bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", tmp + "/data",
    "--checkpoints", ckpt, "--admin-token", "admin-token-mem", "--enrol-token", "enrol-token-mem",
    "--viewer-token", "viewer-token-mem", "--max-model-mb", "300", "--pretrain-epochs", "1",
    "--source-samples", "2"], stdout=subprocess.PIPE, stderr=open(tmp + "/log", "w"), text=True)
url = None
for line in p.stdout:
    if line.startswith("nasflat-host listening on "):
        url = line.split()[-1]; break
threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
pid = p.pid
def rss_children():
    # the binary re-executes itself with RAYON_NUM_THREADS=1: measure the child
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    tot = 0
    for q in [str(pid)] + kids:
        try:
            for l in open(f"/proc/{q}/status"):
                if l.startswith("VmRSS"): tot += int(l.split()[1])
        except OSError: pass
    return tot / 1024
def req(method, path, token, body=None, ctype=None):
    r = urllib.request.Request(url + path, data=body, method=method)
    r.add_header("Authorization", "Bearer " + token)
    if ctype: r.add_header("Content-Type", ctype)
    return urllib.request.urlopen(r, timeout=600)
# wait for health
for _ in range(100):
    try: req("GET", "/healthz", "x").read(); break
    except Exception: time.sleep(0.2)
fp = {"cpu_model": "mem test", "cores": 2, "target": "x86_64", "kernel": None, "mem_total_kb": None,
      "agent_version": "t", "tract_version": "t"}
reg = json.load(req("POST", "/v1/agents/register", "enrol-token-mem", json.dumps(
    {"protocol_version": 1, "name": "mem", "device_id": None, "fingerprint": fp}).encode(), "application/json"))
time.sleep(5)  # let start-up (checkpoint load or pretraining) settle
samples = []; stop = False
def sampler():
    while not stop:
        samples.append(rss_children()); time.sleep(0.05)
base = rss_children()
t = threading.Thread(target=sampler); t.start()
t0 = time.time()
with open(model, "rb") as f:
    up = json.load(req("POST", f"/v1/models?name=big&devices={reg['device_id']}", "admin-token-mem",
                       f, "application/octet-stream"))
t_up = time.time() - t0
up_peak = max(samples)
samples.clear()
def download():
    with req("GET", f"/v1/models/{up['model_id']}", "admin-token-mem") as r:
        n = 0
        while True:
            b = r.read(1 << 20)
            if not b: break
            n += len(b)
        assert n == size, (n, size)
t0 = time.time()
ths = [threading.Thread(target=download) for _ in range(4)]
[x.start() for x in ths]; [x.join() for x in ths]
t_down = time.time() - t0
stop = True; t.join()
print(f"model {size/2**20:.0f} MiB; host RSS before {base:.0f} MiB; peak during upload {up_peak:.0f} MiB "
      f"(+{up_peak-base:.0f}) in {t_up:.1f} s; peak during 4 parallel downloads {max(samples):.0f} MiB "
      f"(+{max(samples)-base:.0f}) in {t_down:.1f} s")
p.kill()

import { execFile } from "node:child_process";
import { SandboxError } from "./backend.js";

// Node has no binding for the new mount API, so a few lines of Python (Debian's python3, a
// dependency already) make the calls: open_tree(2) clones the image's root, mount_setattr(2)
// makes the clone read-only and id-mapped through the sandbox's own user namespace, setns(2)
// enters the sandbox's mount namespace and move_mount(2) attaches the clone there.
const SCRIPT = String.raw`
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]
def check(result, call):
    if result < 0:
        sys.stderr.write(call + ": " + os.strerror(ctypes.get_errno()) + "\n")
        sys.exit(1)
    return result
source, pid, uid, target = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
# Held open, /proc/<pid> stays that process even if the pid is reused: check it is the sandbox's.
proc = os.open("/proc/%s" % pid, os.O_RDONLY | os.O_DIRECTORY)
if os.fstat(proc).st_uid != uid:
    sys.stderr.write("the sandbox's supervisor is gone\n")
    sys.exit(1)
userns = os.open("ns/user", os.O_RDONLY, dir_fd=proc)
mntns = os.open("ns/mnt", os.O_RDONLY, dir_fd=proc)
SYS_open_tree, SYS_move_mount, SYS_mount_setattr = 428, 429, 442
AT_FDCWD, AT_EMPTY_PATH, AT_RECURSIVE = -100, 0x1000, 0x8000
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, 0o2000000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_IDMAP = 0x1, 0x2, 0x4, 0x100000
tree = check(libc.syscall(SYS_open_tree, AT_FDCWD, source.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC), "open_tree")
attr = MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_IDMAP, 0, 0, userns)
check(libc.syscall(SYS_mount_setattr, tree, b"", AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr)), "mount_setattr")
check(libc.setns(mntns, 0x20000), "setns")
check(libc.syscall(SYS_move_mount, tree, b"", AT_FDCWD, target.encode(), 4), "move_mount")
`;

/**
 * Shows an image's root filesystem (owned by host root, as unpacked) inside a sandbox run by a
 * root runner, owned by the sandbox's root instead: its uid-0 files map through the sandbox's
 * user namespace to the sandbox's own host uid. So the overlay above it can copy files up and
 * steps can write to /usr, while the image on disk stays shared by every sandbox and unchanged: the
 * supervisor unmounts this mount once the overlay holds it, so no one can remount it writable.
 * Runs as host root; `pid` is the sandbox's supervisor, running as `uid`, and `target` a folder in
 * its mount namespace.
 */
export function attachIdmappedImage(source: string, pid: number, uid: number, target: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("python3", ["-I", "-c", SCRIPT, source, String(pid), String(uid), target], { env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" }, timeout: 10_000 }, (err, _out, stderr) => {
      if (!err) return resolve();
      const why = (err as NodeJS.ErrnoException).code === "ENOENT" ? "python3 is missing (Debian package python3)" : stderr.toString().trim() || err.message;
      reject(new SandboxError(`cannot show the image ${source} in the sandbox: ${why} (id-mapped mounts need Linux 5.19 or later)`));
    });
  });
}

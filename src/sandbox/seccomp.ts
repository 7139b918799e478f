import type { SandboxProfile } from "./backend.js";

/**
 * The seccomp filter every sandboxed process runs under (bwrap ships none). A classic BPF
 * program, built here so that it needs no library: it kills processes of a foreign
 * architecture, refuses the syscalls that container escapes are made of with EPERM, refuses
 * namespace flags to clone, and refuses the terminal-injection ioctls.
 *
 * An image builder's filter differs in one way: a builder is root of a user namespace that
 * holds nothing but the sandbox, and must mount and make mount (and other) namespaces there to
 * run a Dockerfile's steps, so the classic mount calls and namespaces other than user
 * namespaces are allowed. A nested user namespace stays refused: it would hand the builder's
 * steps a fresh set of capabilities, the kernel surface the step filter keeps shut.
 */

const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const JSET_K = 0x45;
const RET_K = 0x06;

const RET_ALLOW = 0x7fff0000;
const RET_KILL_PROCESS = 0x80000000;
const RET_ERRNO = 0x00050000;
const EPERM = 1;
const ENOSYS = 38;

const OFFSET_NR = 0;
const OFFSET_ARCH = 4;
const offsetArgLow = (i: number) => 16 + 8 * i;

const AUDIT_ARCH_X86_64 = 0xc000003e;
const X32_SYSCALL_BIT = 0x40000000;

const TIOCSTI = 0x5412;
const TIOCLINUX = 0x541c;
// CLONE_NEWTIME | CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
const CLONE_NAMESPACE_FLAGS = 0x00000080 | 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000;
const CLONE_NEWUSER = 0x10000000;

/** The refused calls a builder needs: the classic mount API, and unshare (still refused a new user namespace). */
const builderNeeds = new Set(["mount", "umount2", "pivot_root", "unshare"]);

/** x86_64 numbers of the refused syscalls, by name (for tests and error messages). */
export const refusedSyscalls: Record<string, number> = {
  mount: 165,
  umount2: 166,
  pivot_root: 155,
  open_tree: 428,
  move_mount: 429,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
  fspick: 433,
  mount_setattr: 442,
  unshare: 272,
  setns: 308,
  keyctl: 250,
  add_key: 248,
  request_key: 249,
  ptrace: 101,
  process_vm_readv: 310,
  process_vm_writev: 311,
  pidfd_getfd: 438,
  bpf: 321,
  userfaultfd: 323,
  perf_event_open: 298,
  name_to_handle_at: 303,
  open_by_handle_at: 304,
  kexec_load: 246,
  kexec_file_load: 320,
  init_module: 175,
  finit_module: 313,
  delete_module: 176,
  acct: 163,
  swapon: 167,
  swapoff: 168,
  reboot: 169,
  iopl: 172,
  ioperm: 173,
  quotactl: 179,
  syslog: 103,
  lookup_dcookie: 212,
  uselib: 134,
  _sysctl: 156,
  clock_settime: 227,
  settimeofday: 164,
  adjtimex: 159,
  clock_adjtime: 305,
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
};
const SYS_IOCTL = 16;
const SYS_CLONE = 56;
const SYS_CLONE3 = 435;

export class UnsupportedArchitectureError extends Error {}

function insn(code: number, jt: number, jf: number, k: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16LE(code, 0);
  b.writeUInt8(jt, 2);
  b.writeUInt8(jf, 3);
  b.writeUInt32LE(k >>> 0, 4);
  return b;
}

const ret = (value: number) => insn(RET_K, 0, 0, value);
const refuse = (errno: number) => ret(RET_ERRNO | errno);

/** The filter as bytes for `bwrap --seccomp FD` (an array of struct sock_filter). */
export function seccompFilter(arch: string = process.arch, profile: SandboxProfile = "step"): Buffer {
  if (arch !== "x64") throw new UnsupportedArchitectureError(`sandboxes need a seccomp filter for ${arch}; only x86_64 has one so far`);
  const program: Buffer[] = [
    insn(LD_W_ABS, 0, 0, OFFSET_ARCH),
    insn(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
    ret(RET_KILL_PROCESS),
    insn(LD_W_ABS, 0, 0, OFFSET_NR),
    // The x32 ABI reaches the same kernel entry points under other numbers: refuse all of it.
    insn(JGE_K, 0, 1, X32_SYSCALL_BIT),
    refuse(EPERM),
  ];
  const builder = profile === "builder";
  for (const [name, nr] of Object.entries(refusedSyscalls)) if (!builder || !builderNeeds.has(name)) program.push(insn(JEQ_K, 0, 1, nr), refuse(EPERM));
  const namespaceFlags = builder ? CLONE_NEWUSER : CLONE_NAMESPACE_FLAGS;
  if (builder) program.push(...refuseFlags(refusedSyscalls.unshare!, CLONE_NEWUSER));
  // clone3 passes its flags in memory, out of a filter's reach: ENOSYS makes libc fall back to clone.
  program.push(insn(JEQ_K, 0, 1, SYS_CLONE3), refuse(ENOSYS));
  program.push(
    insn(JEQ_K, 0, 5, SYS_IOCTL),
    insn(LD_W_ABS, 0, 0, offsetArgLow(1)),
    insn(JEQ_K, 2, 0, TIOCSTI),
    insn(JEQ_K, 1, 0, TIOCLINUX),
    ret(RET_ALLOW),
    refuse(EPERM),
  );
  program.push(...refuseFlags(SYS_CLONE, namespaceFlags), ret(RET_ALLOW));
  return Buffer.concat(program);
}

/** Refuses syscall `nr` when its first argument has any of `flags`, allows it otherwise (the accumulator holds the number on entry). */
function refuseFlags(nr: number, flags: number): Buffer[] {
  return [insn(JEQ_K, 0, 4, nr), insn(LD_W_ABS, 0, 0, offsetArgLow(0)), insn(JSET_K, 1, 0, flags), ret(RET_ALLOW), refuse(EPERM)];
}

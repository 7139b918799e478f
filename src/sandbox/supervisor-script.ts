/**
 * The first process of a sandbox, run by `unshare` as root of the sandbox's own user namespace
 * (an unprivileged uid on the host). It puts one tmpfs over the sandbox's empty mount dir, with
 * an overlay whose lower layer is the read-only image and whose upper layer lives in that tmpfs,
 * then sleeps holding the namespaces that every `exec` enters. Arguments: mount dir, tmpfs size
 * in bytes, image root ("" for the host image, whose /usr is the lower layer; "attach" to wait
 * until the runner has mounted it at <mount dir>/lower and says so on stdin), DNS resolver
 * ("" when the sandbox has no network), network ("own", or "shared" when it joined another
 * sandbox's namespace, which is that sandbox's to configure), ids ("mapped" when `unshare` mapped
 * the user namespace, "wait" to say so on stdout and wait until the runner has written the
 * namespace's id maps), terminals ("shared" to mount one instance of devpts that every exec uses),
 * host name (the sandbox's, which /etc/hosts names).
 */
export const supervisorScript = String.raw`
set -eu
m="$1"; size="$2"; lower="$3"; resolver="$4"; net="$5"; ids="$6"; terminals="$7"; hostname="$8"
if [ "$ids" = wait ]; then echo idmap; read -r mapped; fi
mount -t tmpfs -o "size=$size,mode=0755,nosuid,nodev" slipway "$m"
mkdir -p "$m/upper" "$m/work" "$m/root" "$m/workspace" "$m/home" "$m/tmp" "$m/etc" "$m/lower" "$m/pts"
if [ "$terminals" = shared ]; then mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 slipway-pts "$m/pts"; fi
case "$lower" in
  "") lower=/usr ;;
  attach) echo attach; read -r attached; lower="$m/lower" ;;
esac
chmod 1777 "$m/tmp"
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$m/upper,workdir=$m/work" "$m/root"
# The overlay holds its own private reference to the attached image; the mount itself, whose
# flags the kernel does not lock, goes, so nothing here can remount the image writable.
[ "$lower" != "$m/lower" ] || umount "$m/lower"
printf 'root:x:0:0:root:/root:/bin/sh\nbuild:x:1000:1000:build:/home/build:/bin/sh\n' > "$m/etc/passwd"
printf 'root:x:0:\nbuild:x:1000:\n' > "$m/etc/group"
# Its own name resolves here: git and others look it up, and DNS may be slow or out of reach.
printf '127.0.0.1 localhost %s\n::1 localhost\n' "$hostname" > "$m/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$m/etc/nsswitch.conf"
if [ -n "$resolver" ]; then printf 'nameserver %s\n' "$resolver" > "$m/etc/resolv.conf"; fi
if [ "$net" = own ]; then
  if command -v ip >/dev/null; then ip link set lo up; fi
  # Services beside the steps may listen on ports below 1024 (a web server on :80), in this
  # namespace only; best effort, as kernels before 4.11 lack the setting.
  echo 0 2>/dev/null > /proc/sys/net/ipv4/ip_unprivileged_port_start || true
fi
echo ready
exec sleep infinity
`;

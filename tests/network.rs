//! Container networks end to end (issue 14; needs root, `ip` and `nft`). Every test runs strata
//! inside network namespaces it creates (`ip netns add`): the bridge, veths, addresses and
//! nftables rules exist only there, and all traffic stays in them. A guard removes the
//! containers and the namespaces, pass or fail.

pub mod run_common;

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use run_common::{code, stderr, stdout, Store, STRATA};

/// A network namespace made for one test, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "strata-t{}-{tag}{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Netns { name };
        ns.host(&["ip", "netns", "add", &ns.name]);
        ns.sh("ip link set lo up");
        ns
    }

    fn host(&self, args: &[&str]) -> Output {
        let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        o
    }

    /// `sh -c SCRIPT` in the namespace; stdout.
    fn sh(&self, script: &str) -> String {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", script])
            .output()
            .unwrap();
        assert!(o.status.success(), "{script}: {}", stderr(&o));
        stdout(&o)
    }

    /// Everything strata may add to a namespace, for before/after comparisons: links,
    /// addresses, routes, the nftables ruleset.
    fn snapshot(&self) -> String {
        self.sh("ip -br link | sed 's/ .*//'; ip -br addr; ip route; nft list ruleset")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A store used from inside a namespace; its containers are removed on drop (before the
/// namespace's own guard runs: fields drop in order).
struct Env {
    store: Store,
    ns: Netns,
}

impl Env {
    fn new() -> Env {
        Env {
            store: Store::new(),
            ns: Netns::new("host"),
        }
    }

    /// `strata --root STORE ARGS…` in the namespace, with the real default network.
    fn strata(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns.name, STRATA, "--root"])
            .arg(self.store.root())
            .args(args)
            .env_remove("STRATA_NETWORK")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.strata(args);
        assert_eq!(code(&o), 0, "strata {args:?}: {}", stderr(&o));
        stdout(&o)
    }

    /// The store's network state files (IPAM), by name.
    fn ipam(&self) -> Vec<String> {
        let dir = self.store.root().join("networks").join("bridge");
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "lock")
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for id in self.store.containers() {
            let _ = self.strata(&["rm", "-f", &id]);
        }
    }
}

#[test]
fn bridge_gives_eth0_an_address_a_route_and_the_files() {
    let env = Env::new();
    let out = env.ok(&[
        "run",
        "--rm",
        "--hostname",
        "web1",
        "--add-host",
        "db:10.1.2.3",
        "busybox",
        "sh",
        "-c",
        "ip -4 -o addr show eth0; ip route show default; cat /etc/hosts; ping -c1 -W2 172.17.0.1 >/dev/null && echo GATEWAY-OK",
    ]);
    assert!(
        out.contains("eth0    inet 172.17.0.2/16"),
        "first address on the default subnet: {out}"
    );
    assert!(out.contains("default via 172.17.0.1 dev eth0"), "{out}");
    assert!(
        out.contains("172.17.0.2\tweb1\n"),
        "hosts names the container: {out}"
    );
    assert!(out.contains("10.1.2.3\tdb\n"), "--add-host: {out}");
    assert!(out.contains("GATEWAY-OK"), "the bridge answers: {out}");

    let out = env.ok(&[
        "run",
        "--rm",
        "--ip",
        "172.17.5.6",
        "--mac-address",
        "02:00:00:aa:bb:cc",
        "--dns",
        "192.0.2.53",
        "busybox",
        "sh",
        "-c",
        "ip -o link show eth0; ip -4 -o addr show eth0; cat /etc/resolv.conf",
    ]);
    assert!(out.contains("link/ether 02:00:00:aa:bb:cc"), "{out}");
    assert!(out.contains("inet 172.17.5.6/16"), "{out}");
    assert!(out.contains("nameserver 192.0.2.53\n"), "{out}");
    assert_eq!(
        out.matches("nameserver").count(),
        1,
        "--dns replaces: {out}"
    );

    let o = env.strata(&["run", "--rm", "--ip", "10.0.0.5", "busybox", "true"]);
    assert_eq!(code(&o), 125, "an --ip outside the subnet is refused");
    assert!(
        stderr(&o).contains("not a usable address in subnet 172.17.0.0/16"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_gateway_keeps_its_mac_while_containers_come_and_go() {
    let env = Env::new();
    let bridge_mac = || {
        env.ns
            .sh("ip -br link show strata0 | awk '{print $3}'")
            .trim()
            .to_string()
    };
    for name in ["gw-a", "gw-b", "gw-c"] {
        env.ok(&["run", "-d", "--name", name, "busybox", "sleep", "300"]);
    }
    // Left to the kernel, the bridge would take the lowest of the veths' random MACs.
    assert_eq!(bridge_mac(), "02:42:ac:11:00:01", "the gateway's fixed MAC");
    let ping = "ping -c1 -W2 172.17.0.1 >/dev/null && echo GATEWAY-OK; cat /proc/net/arp";
    let out = env.ok(&["exec", "gw-c", "sh", "-c", ping]);
    assert!(out.contains("GATEWAY-OK"), "{out}");
    // The others leave (whichever held the lowest MAC among them): gw-c's ARP entry still names
    // the gateway, so it still gets out without waiting for the entry to expire.
    env.ok(&["rm", "-f", "gw-a", "gw-b"]);
    assert_eq!(
        bridge_mac(),
        "02:42:ac:11:00:01",
        "unchanged by ports leaving"
    );
    let out = env.ok(&["exec", "gw-c", "sh", "-c", ping]);
    assert!(
        out.contains("GATEWAY-OK"),
        "gateway reachable after the others left: {out}"
    );
    assert!(out.contains("02:42:ac:11:00:01"), "{out}");
}

#[test]
fn subnet_avoids_existing_routes_and_config_overrides() {
    let env = Env::new();
    // A route to 172.17.0.0/16 already exists: the next of Docker's pools is used.
    env.ns.sh("ip link add r0 type veth peer name r1 && ip addr add 172.17.0.1/16 dev r0 && ip link set r0 up");
    let out = env.ok(&[
        "run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert!(out.contains("inet 172.18.0.2/16"), "{out}");
    std::fs::write(
        env.store.root().join("config.json"),
        r#"{"network": {"default_subnet": "10.123.0.0/24"}}"#,
    )
    .unwrap();
    let out = env.ok(&[
        "run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert!(out.contains("inet 10.123.0.2/24"), "{out}");
    std::fs::write(
        env.store.root().join("config.json"),
        r#"{"network": {"default_subnet": "172.17.128.0/24"}}"#,
    )
    .unwrap();
    let o = env.strata(&["run", "--rm", "busybox", "true"]);
    assert_eq!(code(&o), 125);
    assert!(
        stderr(&o).contains("overlaps 172.17.0.0/16, a route"),
        "{}",
        stderr(&o)
    );
}

/// `ip -o link show eth0` and `ip route show default` in a container on `network`, read with
/// the host's iproute2 (busybox's `ip route` leaves out a route's MTU).
fn link_and_route(env: &Env, network: &str) -> String {
    let id = env.ok(&["run", "-d", "--network", network, "busybox", "sleep", "60"]);
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", id.trim()])).unwrap();
    let pid = v[0]["State"]["Pid"].as_i64().unwrap();
    let out = env.ns.sh(&format!(
        "nsenter -t {pid} -n sh -c 'ip -o link show eth0; ip route show default'"
    ));
    env.ok(&["rm", "-f", id.trim()]);
    out
}

#[test]
fn links_carry_local_sized_frames_and_the_way_out_the_uplinks_mtu() {
    let env = Env::new();
    // No uplink in the namespace: links 65520, the default route Ethernet's 1500.
    let out = link_and_route(&env, "bridge");
    assert!(out.contains(" mtu 65520 "), "eth0: {out}");
    assert!(
        out.contains("default via 172.17.0.1 dev eth0 mtu 1500"),
        "{out}"
    );
    let inspect = env.ok(&["network", "inspect", "bridge"]);
    assert!(
        inspect.contains(r#""com.docker.network.driver.mtu": "65520""#),
        "{inspect}"
    );
    // A download through a published port arrives whole.
    env.ok(&[
        "run", "-d", "--name", "big", "-p", "8080:80", "busybox", "sh", "-c",
        "mkdir /w && dd if=/dev/zero of=/w/f bs=1k count=3072 2>/dev/null && exec httpd -f -p 80 -h /w",
    ]);
    wait_http(&env.ns, "http://127.0.0.1:8080/f -o /dev/null");
    // A frame larger than 1500 crosses the bridge unfragmented (DF set), there and back.
    assert_eq!(
        env.ns
            .sh("ping -c1 -W2 -s 30000 -M do 172.17.0.2 >/dev/null && echo BIG-OK")
            .trim(),
        "BIG-OK"
    );
    assert_eq!(
        env.ns
            .sh("curl -s -m 5 -o /dev/null -w '%{size_download}' http://127.0.0.1:8080/f"),
        "3145728"
    );
    assert!(env.ns.sh("ip -o link show strata0").contains(" mtu 65520 "));
    env.ok(&["rm", "-f", "big"]);

    // An uplink of 9000 (a jumbo-frame LAN): the way out takes its MTU.
    env.ns.sh(
        "ip link add up0 mtu 9000 type veth peer name up1 mtu 9000 && ip link set up1 up && ip link set up0 up && ip addr add 192.0.2.2/24 dev up0 && ip route add default via 192.0.2.1",
    );
    let out = link_and_route(&env, "bridge");
    assert!(
        out.contains("default via 172.17.0.1 dev eth0 mtu 9000"),
        "{out}"
    );

    // `-o mtu=N` sets every link; the uplink's 9000 is larger, so the route takes none.
    env.ok(&[
        "network",
        "create",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "small",
    ]);
    let out = link_and_route(&env, "small");
    assert!(out.contains(" mtu 1400 "), "eth0: {out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("default via ") && !l.contains("mtu")),
        "{out}"
    );
    let inspect = env.ok(&["network", "inspect", "small"]);
    assert!(
        inspect.contains(r#""com.docker.network.driver.mtu": "1400""#),
        "{inspect}"
    );
    let o = env.strata(&["network", "create", "-o", "mtu=70000", "huge"]);
    assert_eq!(code(&o), 125, "{}", stderr(&o));
    assert!(stderr(&o).contains("must be 68 to 65535"), "{}", stderr(&o));

    // The default network's MTU from config.json (Docker's daemon.json `mtu`).
    std::fs::write(
        env.store.root().join("config.json"),
        r#"{"network": {"mtu": 1500}}"#,
    )
    .unwrap();
    let out = link_and_route(&env, "bridge");
    assert!(out.contains(" mtu 1500 "), "eth0: {out}");
}

/// An "outside" namespace behind the test's host namespace: a veth pair (1500 bytes), the
/// host's end `up0` 10.99.0.1/24, the outside's `ext0` 10.99.0.2/24.
fn outside(env: &Env) -> Netns {
    let ext = Netns::new("ext");
    env.ns.sh(&format!(
        "ip link add up0 type veth peer name ext0 netns {ext} && ip addr add 10.99.0.1/24 dev up0 && ip link set up0 up",
        ext = ext.name
    ));
    ext.sh("ip addr add 10.99.0.2/24 dev ext0 && ip link set ext0 up");
    ext
}

#[test]
fn large_transfers_cross_a_1500_byte_uplink_both_ways() {
    let env = Env::new();
    // The world behind a 1500-byte uplink, the host's default route; the containers' links
    // are 65520, so the way out must take the uplink's size (mtu.rs).
    let ext = outside(&env);
    env.ns.sh("ip route add default via 10.99.0.2");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), vec![7u8; 3 << 20]).unwrap();
    // A world server, bounded by timeout(1) and killed when the test ends, pass or fail.
    struct Killer(String);
    impl Drop for Killer {
        fn drop(&mut self) {
            let _ = Command::new("pkill").args(["-f", &self.0]).status();
        }
    }
    let _world = Killer(format!(
        "httpd -f -p 10.99.0.2:80 -h {}",
        dir.path().display()
    ));
    ext.sh(&format!(
        "(timeout 60 busybox httpd -f -p 10.99.0.2:80 -h {} </dev/null >/dev/null 2>&1 &)",
        dir.path().display()
    ));
    let got = env.ok(&[
        "run", "--rm", "busybox", "sh", "-c",
        // (Debian 12's busybox-static wget crashes; nc and sed do HTTP/1.0, headers cut.)
        r#"for i in 1 2 3 4 5 6 7 8 9 10; do n=$(printf 'GET /f HTTP/1.0\r\n\r\n' | nc -w 5 10.99.0.2 80 | sed '1,/^\r$/d' | wc -c); [ "$n" -gt 0 ] && echo "$n" && break; sleep 0.2; done"#,
    ]);
    assert!(
        got.lines().any(|l| l.trim() == "3145728"),
        "container downloads from the world: {got}"
    );
    env.ok(&[
        "run", "-d", "--name", "big", "-p", "8080:80", "busybox", "sh", "-c",
        "mkdir /w && dd if=/dev/zero of=/w/f bs=1k count=3072 2>/dev/null && exec httpd -f -p 80 -h /w",
    ]);
    wait_http(&env.ns, "http://127.0.0.1:8080/f -o /dev/null");
    let size = ext.sh("curl -s -m 10 -o /dev/null -w '%{size_download}' http://10.99.0.1:8080/f");
    assert_eq!(size, "3145728", "the world downloads from the container");
}

#[test]
fn outbound_traffic_is_masqueraded() {
    let env = Env::new();
    // The outside has no route back to the containers' subnet: only masqueraded packets can
    // be answered.
    let _ext = outside(&env);
    let out = env.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "ping -c1 -W2 10.99.0.2 >/dev/null && echo OUT-OK",
    ]);
    assert!(out.contains("OUT-OK"), "{out}");
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "ping -c1 -W1 10.99.0.2 >/dev/null && echo OUT-OK || echo NO-WAY",
    ]);
    assert!(out.contains("NO-WAY"), "{out}");
}

#[test]
fn everything_is_removed_with_the_container_and_after_kill_9() {
    let env = Env::new();
    let before = env.ns.snapshot();
    let web = env.ok(&["run", "-d", "--name", "web", "busybox", "sleep", "300"]);
    let web = web.trim();
    env.ok(&["run", "-d", "--name", "web2", "busybox", "sleep", "300"]);
    let during = env.ns.snapshot();
    assert!(
        during.contains("strata0") && during.contains("veth"),
        "{during}"
    );
    assert!(during.contains("table ip strata_strata0"), "{during}");
    assert_eq!(env.ipam(), ["state.json"]);
    // Containers reach each other on the default bridge by address.
    let out = env.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "ping -c1 -W2 172.17.0.2 >/dev/null && echo PEER-OK",
    ]);
    assert!(out.contains("PEER-OK"), "{out}");

    // kill -9 of web's monitor: the next command releases its lease and veth.
    let pid: i32 = std::fs::read_to_string(
        env.store
            .root()
            .join("containers")
            .join(web)
            .join("monitor.pid"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    // Only this test's own monitor, by the pid its store recorded.
    env.ns.host(&["kill", "-9", &pid.to_string()]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    env.ok(&["ps", "-a"]);
    let state =
        std::fs::read_to_string(env.store.root().join("networks/bridge/state.json")).unwrap();
    assert!(!state.contains(web), "web's lease is released: {state}");
    assert_eq!(
        env.ns.sh("ip -br link | grep -c veth").trim(),
        "1",
        "{}",
        env.ns.snapshot()
    );

    env.ok(&["rm", "-f", "web", "web2"]);
    assert_eq!(env.ns.snapshot(), before, "nothing left after rm");
    assert!(
        env.ipam().is_empty(),
        "no IPAM state left: {:?}",
        env.ipam()
    );
}

#[test]
fn fifty_containers_leave_the_state_as_before() {
    let env = Env::new();
    let before = env.ns.snapshot();
    for i in 0..50 {
        let name = format!("c{i}");
        // Every other one publishes a port: its own nftables table comes and goes too.
        let publish: &[&str] = if i % 2 == 0 { &["-p", "8080:80"] } else { &[] };
        let mut args = vec!["run", "-d", "--name", &name];
        args.extend_from_slice(publish);
        args.extend_from_slice(&["busybox", "sleep", "60"]);
        env.ok(&args);
        env.ok(&["rm", "-f", &name]);
    }
    assert_eq!(env.ns.snapshot(), before);
    assert!(env.ipam().is_empty(), "{:?}", env.ipam());
}

/// A UDP echo server for the container: the host's python3 reached through a read-only bind of
/// `/` and `chroot` (busybox's `nc` has no UDP).
const UDP_ECHO: &str = "exec chroot /host /usr/bin/python3 -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 5353));\nwhile True: d, a = s.recvfrom(100); s.sendto(b'echo:' + d, a)\"";

/// Sends one datagram from the namespace and prints the answer (or `NONE`).
fn udp_probe(ns: &Netns, ip: &str, port: u16) -> String {
    ns.sh(&format!(
        "python3 -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.sendto(b'ping', ('{ip}', {port}))\ntry: print(s.recvfrom(100)[0].decode())\nexcept Exception: print('NONE')\""
    ))
    .trim()
    .to_string()
}

/// `curl` from the namespace: the body, or `FAIL` when nothing answers (bounded: 2 s).
fn http_get(ns: &Netns, url: &str) -> String {
    ns.sh(&format!("curl -s -m 2 {url} || echo FAIL"))
        .trim()
        .to_string()
}

/// Waits (bounded) until `url` answers.
fn wait_http(ns: &Netns, url: &str) {
    for _ in 0..50 {
        if http_get(ns, url) != "FAIL" {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{url} never answered");
}

#[test]
fn published_ports_answer_on_localhost_and_other_addresses_only_as_asked() {
    let env = Env::new();
    // The namespace's "other" address, as a host's LAN address.
    env.ns.sh(
        "ip link add up0 type veth peer name up1 && ip addr add 10.99.0.1/24 dev up0 && ip link set up0 up && ip link set up1 up",
    );
    let before = env.ns.snapshot();
    let id = env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1:8081:80",
        "-p",
        "5353:5353/udp",
        "-v",
        "/:/host:ro",
        "busybox",
        "sh",
        "-c",
        &format!("httpd -p 80 -h /etc; {UDP_ECHO}"),
    ]);
    let short = &id.trim()[..12];
    wait_http(&env.ns, "http://127.0.0.1:8080/hostname");
    assert_eq!(http_get(&env.ns, "http://127.0.0.1:8080/hostname"), short);
    assert_eq!(http_get(&env.ns, "http://10.99.0.1:8080/hostname"), short);
    assert_eq!(http_get(&env.ns, "http://127.0.0.1:8081/hostname"), short);
    assert_eq!(
        http_get(&env.ns, "http://10.99.0.1:8081/hostname"),
        "FAIL",
        "-p 127.0.0.1:8081:80 answers on 127.0.0.1 only"
    );
    let mut udp = String::new();
    for _ in 0..20 {
        udp = udp_probe(&env.ns, "127.0.0.1", 5353);
        if udp != "NONE" {
            break;
        }
    }
    assert_eq!(udp, "echo:ping");
    assert_eq!(udp_probe(&env.ns, "10.99.0.1", 5353), "echo:ping");

    assert_eq!(
        env.ok(&["port", "web"]),
        "80/tcp -> 0.0.0.0:8080\n80/tcp -> 127.0.0.1:8081\n5353/udp -> 0.0.0.0:5353\n"
    );
    assert_eq!(env.ok(&["port", "web", "5353/udp"]), "0.0.0.0:5353\n");
    let o = env.strata(&["port", "web", "81"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let ports = env.ok(&["ps", "--format", "{{.Ports}}"]);
    assert_eq!(
        ports.trim(),
        "0.0.0.0:8080->80/tcp, 127.0.0.1:8081->80/tcp, 0.0.0.0:5353->5353/udp"
    );
    assert!(env.ok(&["ps"]).contains("0.0.0.0:8080->80/tcp"));
    // A host port another container publishes is refused, and the refused one leaves nothing.
    let o = env.strata(&["run", "--rm", "-p", "8080:81", "busybox", "true"]);
    assert_eq!(code(&o), 125, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already published by another container"),
        "{}",
        stderr(&o)
    );
    assert_eq!(http_get(&env.ns, "http://127.0.0.1:8080/hostname"), short);

    env.ok(&["rm", "-f", "web"]);
    assert_eq!(env.ns.snapshot(), before, "no rule or veth left");
    assert!(env.ipam().is_empty());
}

#[test]
fn publish_all_maps_exposed_ports_to_free_host_ports() {
    let env = Env::new();
    let ctx = env.store.tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nEXPOSE 80 90/udp\n").unwrap();
    env.ok(&["build", "-t", "exposer", ctx.to_str().unwrap()]);
    env.ok(&[
        "run", "-d", "--name", "ex", "-P", "exposer", "httpd", "-f", "-p", "80", "-h", "/etc",
    ]);
    let lines = env.ok(&["port", "ex"]);
    let mut host_ports = Vec::new();
    for (line, want) in lines
        .lines()
        .zip(["80/tcp -> 0.0.0.0:", "90/udp -> 0.0.0.0:"])
    {
        assert!(line.starts_with(want), "{lines}");
        let port: u16 = line[want.len()..].parse().unwrap();
        assert!(port >= 1024, "an ephemeral port: {lines}");
        host_ports.push(port);
    }
    assert_eq!(host_ports.len(), 2, "{lines}");
    let url = format!("http://127.0.0.1:{}/hostname", host_ports[0]);
    wait_http(&env.ns, &url);
    assert_eq!(http_get(&env.ns, &url), env.inspect_id("ex")[..12]);
}

impl Env {
    fn inspect_id(&self, name: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        v[0]["Id"].as_str().unwrap().to_string()
    }
}

/// `ping -c1` NAME from inside container `from`: true when it answers.
fn pings(env: &Env, from: &str, name: &str) -> bool {
    let o = env.strata(&["exec", from, "ping", "-c1", "-W2", name]);
    code(&o) == 0
}

#[test]
fn user_network_members_find_each_other_by_name_and_alias() {
    let env = Env::new();
    let before = env.ns.snapshot();
    let id = env.ok(&["network", "create", "appnet"]);
    assert_eq!(id.trim().len(), 64);
    assert!(env.ok(&["network", "ls"]).contains(" appnet "));
    env.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "appnet",
        "--network-alias",
        "database",
        "busybox",
        "sleep",
        "300",
    ]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "app",
        "--network",
        "appnet",
        "busybox",
        "sleep",
        "300",
    ]);
    assert!(pings(&env, "app", "db"), "by name");
    assert!(pings(&env, "app", "database"), "by alias");
    // A container started later is found by the earlier ones.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "late",
        "--network",
        "appnet",
        "busybox",
        "sleep",
        "300",
    ]);
    assert!(
        pings(&env, "db", "late"),
        "db finds a member that joined after it"
    );
    // The default bridge resolves no names (Docker's rule), and networks are apart.
    env.ok(&["run", "-d", "--name", "other", "busybox", "sleep", "300"]);
    assert!(!pings(&env, "other", "db"), "not from the default bridge");
    env.ok(&["network", "create", "sidenet"]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "side",
        "--network",
        "sidenet",
        "--network-alias",
        "aside",
        "busybox",
        "sleep",
        "300",
    ]);
    for (from, to) in [
        ("side", "db"),
        ("side", "database"),
        ("app", "side"),
        ("app", "aside"),
    ] {
        assert!(
            !pings(&env, from, to),
            "{from} must not resolve {to} across networks"
        );
    }
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["network", "inspect", "appnet"])).unwrap();
    assert_eq!(inspect[0]["Containers"].as_object().unwrap().len(), 3);
    let o = env.strata(&["network", "rm", "appnet"]);
    assert_eq!(code(&o), 1, "in use: {}", stderr(&o));
    assert!(stderr(&o).contains("active endpoints"), "{}", stderr(&o));

    env.ok(&["rm", "-f", "late"]);
    assert!(
        !env.ok(&["exec", "db", "cat", "/etc/hosts"])
            .contains("late"),
        "a member that left is gone from the others' /etc/hosts"
    );
    env.ok(&["rm", "-f", "db", "app", "other", "side"]);
    env.ok(&["network", "rm", "sidenet"]);
    assert_eq!(env.ok(&["network", "rm", "appnet"]).trim(), "appnet");
    assert!(!env.ok(&["network", "ls"]).contains("appnet"));
    assert_eq!(env.ns.snapshot(), before);
}

#[test]
fn internal_network_has_no_way_out() {
    let env = Env::new();
    let ext = Netns::new("ext");
    env.ns.sh(&format!(
        "ip link add up0 type veth peer name ext0 netns {ext} && ip addr add 10.99.0.1/24 dev up0 && ip link set up0 up",
        ext = ext.name
    ));
    ext.sh("ip addr add 10.99.0.2/24 dev ext0 && ip link set ext0 up");
    env.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.50.0.0/24",
        "sealed",
    ]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        "sealed",
        "busybox",
        "sleep",
        "300",
    ]);
    let out = env.ok(&[
        "run", "--rm", "--network", "sealed", "busybox", "sh", "-c",
        "ip route; ping -c1 -W2 peer >/dev/null && echo PEER-OK; ping -c1 -W1 10.99.0.2 >/dev/null && echo OUT || echo NO-WAY-OUT; ping -c1 -W1 10.50.0.1 >/dev/null && echo HOST || echo NO-HOST",
    ]);
    assert!(!out.contains("default"), "no default route: {out}");
    assert!(out.contains("PEER-OK"), "{out}");
    assert!(out.contains("NO-WAY-OUT"), "{out}");
    assert!(out.contains("10.50.0.0/24"), "{out}");
    let rules = env.ns.sh("nft list ruleset");
    assert!(
        !rules.contains("masquerade"),
        "no masquerade on an internal network: {rules}"
    );
    env.ok(&["rm", "-f", "peer"]);
    env.ok(&["network", "prune", "-f"]);
    assert!(!env.ok(&["network", "ls"]).contains("sealed"));
}

#[test]
fn network_container_shares_another_containers_namespace() {
    let env = Env::new();
    let id = env.ok(&[
        "run", "-d", "--name", "web", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc",
    ]);
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "busybox",
        "sh",
        "-c",
        "ip -4 -o addr show eth0; sleep 0.3; wget -qO- http://127.0.0.1/hostname",
    ]);
    assert!(out.contains("inet 172.17.0.2/16"), "web's eth0: {out}");
    assert!(
        out.contains(&id.trim()[..12]),
        "web's httpd on the shared loopback: {out}"
    );
    let o = env.strata(&[
        "run",
        "--rm",
        "--network",
        "container:nosuch",
        "busybox",
        "true",
    ]);
    assert_ne!(code(&o), 0);
    env.ok(&["stop", "-t", "1", "web"]);
    let o = env.strata(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "busybox",
        "true",
    ]);
    assert_eq!(code(&o), 125, "{}", stderr(&o));
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
}

#[test]
fn link_sets_hosts_entries_and_docker_env_vars() {
    let env = Env::new();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "-p",
        "5432:5432",
        "-e",
        "DBPASS=secret",
        "busybox",
        "sleep",
        "300",
    ]);
    let out = env.ok(&[
        "run",
        "--rm",
        "--name",
        "client",
        "--link",
        "db:pg",
        "busybox",
        "sh",
        "-c",
        "env | grep ^PG_ | sort; cat /etc/hosts; ping -c1 -W2 pg >/dev/null && echo PING-OK",
    ]);
    for want in [
        "PG_NAME=/client/pg\n",
        "PG_PORT=tcp://172.17.0.2:5432\n",
        "PG_PORT_5432_TCP=tcp://172.17.0.2:5432\n",
        "PG_PORT_5432_TCP_ADDR=172.17.0.2\n",
        "PG_PORT_5432_TCP_PORT=5432\n",
        "PG_PORT_5432_TCP_PROTO=tcp\n",
        "PG_ENV_DBPASS=secret\n",
        "172.17.0.2\tpg\n",
        "172.17.0.2\tdb\n",
        "PING-OK",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let o = env.strata(&["run", "--rm", "--link", "nosuch", "busybox", "true"]);
    assert_ne!(code(&o), 0);
}

#[test]
fn build_network_bridge_gives_run_an_address_and_cleans_up() {
    let env = Env::new();
    let before = env.ns.snapshot();
    let ctx = env.store.tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN (ip -4 -o addr show eth0; ip route) > /net.txt\n",
    )
    .unwrap();
    env.ok(&[
        "build",
        "--network",
        "bridge",
        "-t",
        "netbuilt",
        ctx.to_str().unwrap(),
    ]);
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "netbuilt",
        "cat",
        "/net.txt",
    ]);
    assert!(out.contains("inet 172.17.0.2/16"), "{out}");
    assert!(out.contains("default via 172.17.0.1"), "{out}");
    assert_eq!(env.ns.snapshot(), before, "the build left nothing behind");
    assert!(env.ipam().is_empty());
}

#[test]
fn kill_9_of_a_foreground_strata_run_is_repaired_by_the_next_command() {
    let env = Env::new();
    let before = env.ns.snapshot();
    // `ip netns exec` execs strata: the child's pid is strata's.
    let mut child = Command::new("ip")
        .args(["netns", "exec", &env.ns.name, STRATA, "--root"])
        .arg(env.store.root())
        .args(["run", "-p", "8080:80", "busybox", "sleep", "300"])
        .env_remove("STRATA_NETWORK")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = env.store.root().join("networks/bridge/state.json");
    for _ in 0..100 {
        if std::fs::read_to_string(&state).is_ok_and(|s| s.contains("container_id")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let during = env.ns.snapshot();
    assert!(
        during.contains("strata0") && during.contains("tcp . 8080 : 172.17.0.2 . 80"),
        "{during}"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    env.ok(&["ps", "-a"]);
    assert_eq!(env.ns.snapshot(), before, "veth, bridge, rules all gone");
    assert!(env.ipam().is_empty(), "{:?}", env.ipam());
}

#[test]
fn network_connect_and_disconnect_a_running_container() {
    let env = Env::new();
    let before = env.ns.snapshot();
    env.ok(&["network", "create", "--subnet", "10.60.0.0/24", "side"]);
    env.ok(&["run", "-d", "--name", "web", "busybox", "sleep", "300"]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        "side",
        "busybox",
        "sleep",
        "300",
    ]);
    assert!(!pings(&env, "peer", "web"), "not connected yet");
    env.ok(&["network", "connect", "--alias", "www", "side", "web"]);
    let addr = env.ok(&["exec", "web", "ip", "-4", "-o", "addr", "show", "eth1"]);
    assert!(addr.contains("inet 10.60.0."), "{addr}");
    let routes = env.ok(&["exec", "web", "ip", "route"]);
    assert!(
        routes.contains("default via 172.17.0.1 dev eth0"),
        "{routes}"
    );
    assert!(
        pings(&env, "peer", "web") && pings(&env, "peer", "www"),
        "by name and alias"
    );
    env.ok(&["network", "disconnect", "side", "web"]);
    assert!(!pings(&env, "peer", "web"), "disconnected");
    let o = env.strata(&["exec", "web", "ip", "link", "show", "eth1"]);
    assert_ne!(code(&o), 0, "eth1 is gone");
    env.ok(&["rm", "-f", "web", "peer"]);
    env.ok(&["network", "rm", "side"]);
    assert_eq!(env.ns.snapshot(), before);
}

#[test]
fn containers_reach_a_published_port_through_the_hosts_address_hairpin() {
    let env = Env::new();
    // The namespace's "other" address, as a host's LAN address.
    env.ns.sh(
        "ip link add up0 type veth peer name up1 && ip addr add 10.99.0.1/24 dev up0 && ip link set up0 up && ip link set up1 up",
    );
    let before = env.ns.snapshot();
    let id = env.ok(&[
        "run", "-d", "--name", "web", "-p", "8080:80", "busybox", "httpd", "-f", "-p", "80", "-h",
        "/etc",
    ]);
    let short = &id.trim()[..12];
    wait_http(&env.ns, "http://10.99.0.1:8080/hostname");
    let veth = env.ns.sh("ip -br link | grep -o '^veth[0-9a-f]*'");
    let port = env.ns.sh(&format!("ip -d link show {}", veth.trim()));
    assert!(
        port.contains("hairpin on"),
        "bridge port hairpin_mode: {port}"
    );
    // The container itself, through the host's address: DNATed back to where it came from
    // (fails without the port table's `ct status dnat … masquerade`). `timeout`, not wget's
    // `-T`: this busybox's wget crashes with it.
    let out = env.ok(&[
        "exec",
        "web",
        "timeout",
        "5",
        "wget",
        "-qO-",
        "http://10.99.0.1:8080/hostname",
    ]);
    assert_eq!(
        out.trim(),
        short,
        "a container reaches its own published port"
    );
    // A neighbour on the same bridge, through the host's address and the gateway's.
    for url in [
        "http://10.99.0.1:8080/hostname",
        "http://172.17.0.1:8080/hostname",
    ] {
        let out = env.ok(&[
            "run", "--rm", "busybox", "timeout", "5", "wget", "-qO-", url,
        ]);
        assert_eq!(out.trim(), short, "a neighbour reaches {url}");
    }
    env.ok(&["rm", "-f", "web"]);
    assert_eq!(env.ns.snapshot(), before, "nothing left after rm");
}

#[test]
fn a_restarted_machine_starts_clean() {
    let mut env = Env::new();
    let boot1 = env.ns.snapshot();
    env.ok(&["network", "create", "--subnet", "10.70.0.0/24", "appnet"]);
    env.ok(&[
        "run", "-d", "--name", "web", "-p", "8080:80", "busybox", "sleep", "300",
    ]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "appnet",
        "busybox",
        "sleep",
        "300",
    ]);
    let during = env.ns.snapshot();
    assert!(
        during.contains("strata0") && during.contains("tcp . 8080 : 172.17.0.2 . 80"),
        "{during}"
    );
    // The "reboot": every strata process dies (kill -9 of the monitors, only this test's, by
    // the pids its store recorded; PDEATHSIG takes the containers), then the whole network
    // namespace goes with its bridge, veths and rules. Only the store is left.
    // Ids first: any strata command after a kill would already repair.
    let ids = [env.inspect_id("web"), env.inspect_id("db")];
    for id in ids {
        let pid = std::fs::read_to_string(
            env.store
                .root()
                .join("containers")
                .join(&id)
                .join("monitor.pid"),
        )
        .unwrap();
        env.ns.host(&["kill", "-9", pid.trim()]);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(std::mem::replace(&mut env.ns, Netns::new("boot2")));
    let leases = |net: &str| {
        std::fs::read_to_string(
            env.store
                .root()
                .join("networks")
                .join(net)
                .join("state.json"),
        )
        .unwrap_or_default()
    };
    assert!(
        leases("bridge").contains("container_id"),
        "a stale lease to clear"
    );
    assert!(
        leases("appnet").contains("container_id"),
        "a stale lease to clear"
    );
    let fresh = env.ns.snapshot();
    assert_eq!(
        fresh, boot1,
        "a fresh namespace looks like the first one did"
    );

    // The next command clears the dead leases and touches nothing in the new namespace.
    let ps = env.ok(&["ps", "-a"]);
    assert!(ps.contains("web") && ps.contains("Exited"), "{ps}");
    assert_eq!(leases("bridge"), "", "default network's leases cleared");
    assert_eq!(leases("appnet"), "", "user network's leases cleared");
    assert_eq!(env.ns.snapshot(), fresh, "repair added nothing");

    // New containers work: the freed address and port are taken again.
    let id = env.ok(&[
        "run", "-d", "--name", "web2", "-p", "8080:80", "busybox", "httpd", "-f", "-p", "80", "-h",
        "/etc",
    ]);
    wait_http(&env.ns, "http://127.0.0.1:8080/hostname");
    assert_eq!(
        http_get(&env.ns, "http://127.0.0.1:8080/hostname"),
        id.trim()[..12]
    );
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "busybox",
        "ip",
        "-4",
        "-o",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(
        out.contains("inet 10.70.0.2/24"),
        "the dead lease's address is free again: {out}"
    );
    env.ok(&["rm", "-f", "web", "db", "web2"]);
    env.ok(&["network", "rm", "appnet"]);
    assert_eq!(env.ns.snapshot(), fresh, "nothing leaks");
    assert!(env.ipam().is_empty(), "{:?}", env.ipam());
}

#[test]
fn a_lease_from_before_port_maps_is_repaired_with_its_table() {
    let env = Env::new();
    let before = env.ns.snapshot();
    // What a strata from before port maps left after a kill -9: a lease whose holder is dead
    // (a finished child's pid and a start time no process has) and its container's own table.
    let mut dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    env.ns.sh(
        "nft -f - <<'N'\ntable ip strata_vethdeadbeef {\n  chain prerouting {\n    type nat hook prerouting priority -100; policy accept;\n    fib daddr type local tcp dport 8080 dnat to 172.17.0.2:80\n  }\n}\nN",
    );
    let dir = env.store.root().join("networks/bridge");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("state.json"),
        format!(
            r#"{{"bridge": "strata0", "subnet": "172.17.0.0/16", "leases": {{"172.17.0.2": {{
                "container_id": "0123456789abcdef", "veth": "vethdeadbeef", "owner_pid": {pid},
                "owner_start_time": 1, "published": true}}}}}}"#
        ),
    )
    .unwrap();
    assert!(env.ns.snapshot().contains("strata_vethdeadbeef"));
    // `network ls` repairs every network (as `run` and a stale container's reaping do).
    env.ok(&["network", "ls"]);
    assert_eq!(env.ns.snapshot(), before, "the old table is deleted");
    assert!(env.ipam().is_empty(), "{:?}", env.ipam());
}

/// The cgroup directories strata may make for container `id` that exist (v1 hierarchies and v2).
fn cgroup_dirs(id: &str) -> Vec<String> {
    [
        "", "cpu/", "cpuacct/", "memory/", "pids/", "blkio/", "freezer/", "devices/",
    ]
    .iter()
    .map(|c| format!("/sys/fs/cgroup/{c}strata/{id}"))
    .filter(|d| std::path::Path::new(d).exists())
    .collect()
}

/// Every container gets a cgroup of its own, as podman's and Docker's (README "Networks",
/// placement): PID 1 is in `strata/ID` in the v1 memory and pids hierarchies (not cpu without
/// `--cpus`; or v2's), and the directories go with `rm` and, after a `kill -9` of the monitor,
/// with the next command's repair. Run through `nsenter --net` (not `ip netns exec`, whose fresh /sys hides
/// the cgroup filesystem: there strata leaves a container in the caller's cgroups).
#[test]
fn each_container_gets_a_cgroup_of_its_own_removed_with_it() {
    let env = Env::new();
    let netns = format!("--net=/run/netns/{}", env.ns.name);
    let strata = |args: &[&str]| -> String {
        let o = Command::new("nsenter")
            .args([netns.as_str(), STRATA, "--root"])
            .arg(env.store.root())
            .args(args)
            .env_remove("STRATA_NETWORK")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "strata {args:?}: {}", stderr(&o));
        stdout(&o)
    };
    // Removes both containers through the same view of /sys, pass or fail.
    struct Rm<'a, F: Fn(&[&str]) -> String>(&'a F, [&'a str; 2]);
    impl<F: Fn(&[&str]) -> String> Drop for Rm<'_, F> {
        fn drop(&mut self) {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                (self.0)(&["rm", "-f", self.1[0], self.1[1]])
            }));
        }
    }
    let _rm = Rm(&strata, ["web", "other"]);
    let web = strata(&[
        "run", "-d", "--name", "web", "-p", "18080:80", "busybox", "sleep", "300",
    ]);
    let web = web.trim().to_string();
    let other = strata(&["run", "-d", "--name", "other", "busybox", "sleep", "300"]);
    let other = other.trim().to_string();
    let dir = env.store.root().join("containers").join(&web);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state")).unwrap()).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let own = format!(":/strata/{web}");
    let placed: Vec<&str> = cgroup.lines().filter(|l| l.ends_with(&own)).collect();
    if std::path::Path::new("/sys/fs/cgroup/cpu/cgroup.procs").exists() {
        let has = |l: &&str, c: &str| {
            l.split(':')
                .nth(1)
                .is_some_and(|cs| cs.split(',').any(|x| x == c))
        };
        for c in ["memory", "pids"] {
            assert!(
                placed.iter().any(|l| has(l, c)),
                "PID 1 is not in its own {c} cgroup:\n{cgroup}"
            );
        }
        // Not in a cpu cgroup of its own without --cpus: it schedules as its own autogroup.
        assert!(!placed.iter().any(|l| has(l, "cpu")), "{cgroup}");
    } else {
        assert!(placed.iter().any(|l| l.starts_with("0::")), "{cgroup}");
    }
    assert!(!cgroup_dirs(&web).is_empty());

    // kill -9 of web's monitor (this test's own, by the pid its store recorded): the next
    // command removes its cgroups with its lease.
    let monitor = std::fs::read_to_string(dir.join("monitor.pid")).unwrap();
    env.ns.host(&["kill", "-9", monitor.trim()]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    strata(&["ps", "-a"]);
    assert_eq!(
        cgroup_dirs(&web),
        Vec::<String>::new(),
        "repaired after kill -9"
    );
    assert!(!cgroup_dirs(&other).is_empty());
    strata(&["rm", "-f", "other"]);
    assert_eq!(cgroup_dirs(&other), Vec::<String>::new(), "removed with rm");
}

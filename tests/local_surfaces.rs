//! The control socket against local users who are neither root nor in `node.control_group`:
//! the daemon's own socket creation and accept loop (over a context with no engine or
//! networks: `service list` needs neither), and the built `weft` CLI run as other users
//! through `setpriv`. Where a test loosens the socket's mode on purpose (as a chmod mistake or
//! a bind mount into a container would), only the peer-credential check stands between that
//! user and the daemon; and a member of the control group still cannot do what only root may
//! (a command check). Needs root (to become other users); fails loudly without it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use weft::config::ControlGroup;
use weft::control::access::{self, ControlAccess};
use weft::control::ControlCtx;
use weft::discovery::registry::{OwnAddresses, Registry};

const WEFT_BIN: &str = env!("CARGO_BIN_EXE_weft");
/// nobody / nogroup.
const NOBODY: u32 = 65534;
/// A gid no test user is given unless the test says so.
const OTHER_GID: u32 = 4242;

/// A directory of this test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let d = PathBuf::from(format!("/tmp/weft-local-surfaces-{}-{what}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create the test directory");
        // Other users must reach the socket's directory for the socket's own checks to matter.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn require_root() {
    // SAFETY: geteuid only reads our own uid.
    let root = unsafe { libc::geteuid() } == 0;
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(root && setpriv, "this test runs the CLI as other users: it needs root and setpriv (util-linux)");
}

/// A control context with no engine and no networks.
async fn ctx() -> Arc<ControlCtx> {
    let own = OwnAddresses {
        subnets: vec!["10.42.1.0/24".parse().unwrap()],
        underlay: "192.0.2.1".parse().unwrap(),
    };
    let (engine, _) = std::sync::mpsc::sync_channel(1);
    let (reload, _) = tokio::sync::mpsc::channel(1);
    Arc::new(ControlCtx {
        node: "h1".into(),
        nets: vec![],
        pools: vec![],
        leases: tokio::sync::Mutex::new(weft::ipam::Leases::default()),
        netlink: weft::netlink::Netlink::new().await.expect("rtnetlink socket"),
        engine,
        registry: Registry::new([], own),
        dns_domain: None,
        dns_stats: Arc::default(),
        reload,
        local_stats: Arc::default(),
    })
}

/// Binds `dir/weft.sock` as the daemon does and serves it until the runtime ends.
async fn serve(dir: &Path, access: ControlAccess) -> (PathBuf, Arc<ControlCtx>) {
    let path = dir.join("weft.sock");
    let listener = access::bind(&path, &access).expect("bind the control socket");
    let ctx = ctx().await;
    tokio::spawn(weft::control::server::serve_on(listener, Arc::clone(&ctx), access));
    (path, ctx)
}

/// `weft service list` as uid/gid with exactly the supplementary `groups`.
async fn service_list_as(socket: &Path, uid: u32, gid: u32, groups: &[u32]) -> Output {
    weft_as(socket, uid, gid, groups, &["service", "list"]).await
}

/// `weft ARGS --socket SOCKET` as uid/gid with exactly the supplementary `groups`.
async fn weft_as(socket: &Path, uid: u32, gid: u32, groups: &[u32], args: &[&str]) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}"));
    match groups {
        [] => cmd.arg("--clear-groups"),
        g => cmd.arg(format!("--groups={}", g.iter().map(u32::to_string).collect::<Vec<_>>().join(","))),
    };
    cmd.args(["--", WEFT_BIN]).args(args).arg("--socket").arg(socket);
    tokio::task::spawn_blocking(move || cmd.output().expect("run setpriv")).await.unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mode_and_group(path: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.mode() & 0o7777, m.uid(), m.gid())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rogue_user_on_a_loosened_root_only_socket_is_refused_and_counted() {
    require_root();
    let dir = TempDir::new("root");
    let (socket, ctx) = serve(&dir.0, ControlAccess::new(None)).await;
    assert_eq!(mode_and_group(&socket), (0o600, 0, 0), "root's alone");
    let o = service_list_as(&socket, NOBODY, NOBODY, &[]).await;
    assert!(!o.status.success(), "nobody used a 0600 socket");
    // As if someone ran chmod 666 on it: the daemon still refuses, with one line.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let before = ctx.local_stats.snapshot().control_refused;
    let o = service_list_as(&socket, NOBODY, NOBODY, &[]).await;
    assert!(!o.status.success(), "nobody used the control socket: {}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        stderr(&o),
        "weft: error: uid 65534 may not use the weft control socket: only root (node.control_group is not set) may\n"
    );
    assert_eq!(ctx.local_stats.snapshot().control_refused, before + 1);
    let o = service_list_as(&socket, 0, 0, &[]).await;
    assert!(o.status.success(), "root was refused: {}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rogue_user_outside_the_control_group_is_refused_and_members_are_served() {
    require_root();
    let dir = TempDir::new("group");
    let group = ControlGroup { name: "nogroup".into(), gid: NOBODY };
    let (socket, ctx) = serve(&dir.0, ControlAccess::new(Some(group))).await;
    assert_eq!(mode_and_group(&socket), (0o660, 0, NOBODY), "root's and the control group's");
    for (gid, groups, how) in
        [(NOBODY, &[][..], "primary group"), (OTHER_GID, &[NOBODY][..], "supplementary group")]
    {
        let o = service_list_as(&socket, NOBODY, gid, groups).await;
        assert!(o.status.success(), "a member by its {how} was refused: {}", stderr(&o));
    }
    // A member is not root: a command check would run as root, so only root may add one.
    let command =
        ["service", "add", "web", "--address", "10.42.1.1", "--port", "80", "--check-command", "/bin/true"];
    let o = weft_as(&socket, NOBODY, NOBODY, &[], &command).await;
    assert!(!o.status.success(), "a member added a command check");
    assert!(
        stderr(&o).contains("command checks run as the daemon's user: only root may add them"),
        "{}",
        stderr(&o)
    );
    let o = weft_as(&socket, 0, 0, &[], &command).await;
    assert!(!stderr(&o).contains("only root may add them"), "root was refused: {}", stderr(&o));
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = service_list_as(&socket, NOBODY, OTHER_GID, &[]).await;
    assert!(!o.status.success(), "a non-member used the control socket");
    assert_eq!(
        stderr(&o),
        "weft: error: uid 65534 may not use the weft control socket: only root and members of group \
         \"nogroup\" (node.control_group) may\n"
    );
    assert_eq!(ctx.local_stats.snapshot().control_refused, 1);
}

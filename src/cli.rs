//! The command line (clap derive). Handlers live elsewhere; this file only describes.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// weft: an encrypted L2 overlay network for containers.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Run {
        /// Node configuration file.
        #[arg(long, short, default_value = "/etc/weft/node.toml")]
        config: PathBuf,
    },
    /// Remove what a stopped daemon leaves for its next start: container links and their
    /// leases and resolv.conf files, and the bridges. Refuses while the daemon runs.
    Teardown {
        /// Node configuration file.
        #[arg(long, short, default_value = "/etc/weft/node.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file and the files it names, then exit.
    CheckConfig {
        /// Node configuration file.
        #[arg(long, short, default_value = "/etc/weft/node.toml")]
        config: PathBuf,
    },
    /// Generate a node key: the private key goes to --out (mode 0600), the public key (X25519
    /// and record-signing keys, one base64 string) to --out.pub and stdout.
    Keygen {
        /// Private key file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of a private key file, as `weft keygen` prints it.
    Pubkey {
        /// Private key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Certificate authority operations.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Certificate inspection.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Attach a container network namespace to a network of the running daemon.
    Attach(AttachArgs),
    /// Detach a container from a network of the running daemon.
    Detach(DetachArgs),
    /// Show the daemon's state.
    Status(ClientArgs),
    /// List peers with their endpoints, sessions and traffic.
    Peers(ClientArgs),
    /// Register, remove and list this node's service instances.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Every service in the cluster with its instances and their health.
    Services(ClientArgs),
    /// Re-read the node TOML and apply what can change live (as SIGHUP does), or say why not.
    Reload(ClientArgs),
    /// This node's networks: VNI, subnets, gateway, MTU, encryption, containers, FDB size.
    Networks(ClientArgs),
    /// Probe a member through its encrypted tunnel and print the round-trip time.
    Ping {
        /// Member name (or public key, or underlay endpoint).
        peer: String,
        /// Probes to send.
        #[arg(long, short, default_value_t = 3)]
        count: u32,
        /// Seconds between probes.
        #[arg(long, short, default_value_t = 1.0)]
        interval: f64,
        /// Daemon connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Inspect the network policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Act as the CNI plugin (type "weft"): CNI_* environment and network config on stdin,
    /// result on stdout. Runtimes exec /opt/cni/bin/weft (a symlink to this binary) with
    /// CNI_COMMAND set, which needs no subcommand; see README "CNI plugin".
    Cni,
    /// Print a shell completion script to stdout (for packagers; see README "Operating weft").
    #[command(hide = true)]
    Completions {
        /// Shell to generate for.
        shell: CompletionShell,
    },
    /// Print the weft(8) man page (roff) to stdout, or with --dir write weft.8, weft.toml.5
    /// and one weft-<subcommand>.8 per subcommand into DIR.
    #[command(hide = true)]
    Man {
        /// Directory to write every man page into instead of printing weft(1).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

impl Command {
    /// Whether machine-readable output was asked for, so that an error is printed as JSON too.
    /// No wildcard arm: a new command must decide.
    pub fn json(&self) -> bool {
        match self {
            Command::Cert(CertCommand::Show { json, .. }) => *json,
            Command::Attach(AttachArgs { client, .. })
            | Command::Detach(DetachArgs { client, .. })
            | Command::Ping { client, .. }
            | Command::Policy(PolicyCommand::Explain { client, .. })
            | Command::Service(ServiceCommand::Rm { client, .. }) => client.json,
            Command::Service(ServiceCommand::Add(a)) => a.client.json,
            Command::Status(c)
            | Command::Peers(c)
            | Command::Services(c)
            | Command::Reload(c)
            | Command::Networks(c)
            | Command::Policy(PolicyCommand::Show(c))
            | Command::Service(ServiceCommand::List(c)) => c.json,
            Command::Run { .. }
            | Command::CheckConfig { .. }
            | Command::Teardown { .. }
            | Command::Keygen { .. }
            | Command::Pubkey { .. }
            | Command::Ca(_)
            | Command::Cni
            | Command::Completions { .. }
            | Command::Man { .. } => false,
        }
    }
}

/// `weft policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Which rule decides traffic from one container (or address) to another, on this node.
    Explain {
        /// Source: container name or address.
        #[arg(long)]
        from: String,
        /// Destination: container name or address.
        #[arg(long)]
        to: String,
        /// tcp, udp, icmp or an IP protocol number.
        #[arg(long, default_value = "tcp")]
        proto: String,
        /// Destination port (tcp/udp).
        #[arg(long)]
        port: Option<u16>,
        /// Network.
        #[arg(long, default_value = "default")]
        network: String,
        /// Daemon connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every network's rules with their hit counters and the connection table size.
    Show(ClientArgs),
}

/// `weft service` subcommands.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Register an instance on this node (it lives until removed or the daemon restarts).
    Add(Box<ServiceAddArgs>),
    /// Remove this node's instances by id, or every instance of a service name.
    Rm {
        /// Instance id (`NAME/TARGET:PORT/PROTO`, as `list` shows) or service name.
        id: String,
        /// Daemon connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// This node's instances with their health.
    List(ClientArgs),
}

/// `weft service add`.
#[derive(Debug, Args)]
pub struct ServiceAddArgs {
    /// Service name (a DNS label: a-z 0-9 -).
    pub name: String,
    /// Port.
    #[arg(long)]
    pub port: u16,
    /// The instance runs in this attached container.
    #[arg(long, conflicts_with = "address", required_unless_present = "address")]
    pub container: Option<String>,
    /// The instance listens at this address.
    #[arg(long)]
    pub address: Option<std::net::IpAddr>,
    /// Network (default: the node's first).
    #[arg(long)]
    pub network: Option<String>,
    /// tcp or udp.
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// Tag; repeatable.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Health check: TCP connect to the instance.
    #[arg(long, conflicts_with_all = ["check_http", "check_command"])]
    pub check_tcp: bool,
    /// Health check: HTTP GET of this path on the instance answers 2xx.
    #[arg(long, conflicts_with = "check_command")]
    pub check_http: Option<String>,
    /// Health check: this command (split on spaces, no shell) exits 0.
    #[arg(long)]
    pub check_command: Option<String>,
    /// Check interval (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// Check timeout (default: min(2s, interval)).
    #[arg(long)]
    pub timeout: Option<String>,
    /// Consecutive passes to become passing.
    #[arg(long, default_value_t = 1)]
    pub rise: u32,
    /// Consecutive failures to become critical.
    #[arg(long, default_value_t = 2)]
    pub fall: u32,
    /// Daemon connection.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// CA subcommands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new network CA: a private key and a self-signed certificate.
    Init {
        /// CA name.
        #[arg(long)]
        name: String,
        /// CA private key file to create (mode 0600).
        #[arg(long, default_value = "ca.key")]
        out_key: PathBuf,
        /// CA certificate file to create.
        #[arg(long, default_value = "ca.crt")]
        out_cert: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u64,
    },
    /// Revoke a node certificate's key: append a CA-signed revocation to --out (created if
    /// missing). Nodes load the file (`[node] revocations`) and spread it to every member.
    Revoke {
        /// CA private key.
        #[arg(long, default_value = "ca.key")]
        ca_key: PathBuf,
        /// CA certificate.
        #[arg(long, default_value = "ca.crt")]
        ca_cert: PathBuf,
        /// The node certificate to revoke.
        #[arg(long)]
        cert: PathBuf,
        /// Revocation file to append to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a node certificate, or renew one (--renew).
    Sign {
        /// CA private key.
        #[arg(long, default_value = "ca.key")]
        ca_key: PathBuf,
        /// CA certificate.
        #[arg(long, default_value = "ca.crt")]
        ca_cert: PathBuf,
        /// Node name (lowercase letters, digits, - _ .).
        #[arg(long, required_unless_present = "renew", conflicts_with = "renew")]
        name: Option<String>,
        /// The node's public key, base64 (as printed by `weft keygen` or `weft pubkey`).
        #[arg(long, conflicts_with = "public_key_file", required_unless_present_any = ["public_key_file", "renew"])]
        public_key: Option<String>,
        /// File holding the node's public key (`<key>.pub` from `weft keygen`).
        #[arg(long)]
        public_key_file: Option<PathBuf>,
        /// Overlay subnet the node may source (its container subnet); repeatable.
        #[arg(long = "subnet", required_unless_present = "renew", conflicts_with = "renew")]
        subnets: Vec<String>,
        /// Group for policy; repeatable.
        #[arg(long = "group", conflicts_with = "renew")]
        groups: Vec<String>,
        /// Validity in days (capped by the CA's own validity).
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Certificate file to create.
        #[arg(long)]
        out: PathBuf,
        /// Renew this node certificate (expired or not): keep its name, subnets and groups,
        /// and its keys unless --public-key(-file) gives new ones. To change name, subnets or
        /// groups, sign anew with --name/--subnet/--group instead.
        #[arg(long, value_name = "OLD.crt")]
        renew: Option<PathBuf>,
        /// The CA certificate that issued the --renew certificate, when that is not --ca-cert
        /// (re-issuing a node's certificate under a new CA).
        #[arg(long, value_name = "CA.crt", requires = "renew")]
        old_ca: Option<PathBuf>,
    },
}

/// Certificate subcommands.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Print a node or CA certificate.
    Show {
        /// Certificate file.
        path: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Also verify against this CA certificate.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Also check this revocation file (needs --ca).
        #[arg(long, requires = "ca")]
        revocations: Option<PathBuf>,
    },
}

/// How the CLI finds the daemon.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Control socket of the daemon (`node.control_socket`); --socket wins over WEFT_SOCKET.
    #[arg(long, env = "WEFT_SOCKET", default_value = "/run/weft/weft.sock")]
    pub socket: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `weft attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Container network namespace name (as in `ip netns`, i.e. /var/run/netns/NAME) or path.
    #[arg(long)]
    pub netns: String,
    /// Network to join.
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Container name (default: the netns name).
    #[arg(long)]
    pub name: Option<String>,
    /// Address to use instead of the next free one in this node's subnet.
    #[arg(long)]
    pub ip: Option<std::net::IpAddr>,
    /// Interface name inside the container.
    #[arg(long, default_value = "eth0")]
    pub ifname: String,
    /// Label KEY=VALUE (policy selectors; announced with the container); repeatable.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Service the container offers, NAME:PORT[/tcp|/udp]; repeatable (kept in the
    /// `weft.service` label).
    #[arg(long = "service")]
    pub services: Vec<String>,
    /// Daemon connection.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `weft detach`.
#[derive(Debug, Args)]
pub struct DetachArgs {
    /// Container name given at attach time (default: the netns name).
    #[arg(long)]
    pub name: Option<String>,
    /// Container network namespace name.
    #[arg(long)]
    pub netns: Option<String>,
    /// Network to leave.
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Daemon connection.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Shells `weft completions` can generate for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// bash (bash-completion).
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

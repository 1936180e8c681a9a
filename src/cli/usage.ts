// What `sluice --help` prints (every command, option and variable the CLI reads), and what
// `sluice serve --help` and `sluice check --help` print (that command's alone).

/** The variables that override the policy file, for serve and check alike. */
const OVERRIDES = `  SLUICE_LISTEN          overrides server.listen, e.g. 127.0.0.1:50051 or unix:/run/sluice.sock
  SLUICE_ADMIN           overrides server.admin, e.g. 127.0.0.1:9464, :9464 (every interface) or off
  SLUICE_REDIS_URL       overrides store.redis (one server; selects the Redis store)
  SLUICE_REDIS_PASSWORD  overrides store.redis password / password_file / the url's password`;

export const USAGE = `usage: sluice <command> [options]

commands:
  serve [--config FILE] [--pretty]   run the sidecar (default policy: examples/quickstart.yaml)
  check FILE                         validate a policy file (with the overrides below applied),
                                     print every problem, exit 1 if any
  inject [options]                   run the Kubernetes admission webhook that adds the sidecar to pods
  install [--namespace NS] [--image IMAGE] [--failure-policy Ignore|Fail] [--cert-manager]
                                     print the injector's Kubernetes manifests, for
                                     sluice install | kubectl apply -f -
                                     (defaults: sluice-system, sluice:<version>, Ignore;
                                     --cert-manager: cert-manager issues the webhook's certificate)
  acquire RESOURCE KEY=VALUE... [--cost N] [--max-wait D] [--priority P] [--lane L]
                                     ask a running sidecar for units of RESOURCE
  release PERMIT_ID [--actual N]     give a permit back to a running sidecar
  inspect RESOURCE KEY=VALUE...      show a scope's limits and waiters, charging nothing
  version                            print the version (also --version, -v)

sluice serve --help, sluice check --help and sluice acquire --help (for acquire, release and
inspect) describe those commands alone.

inject options:
  --listen HOST:PORT       where the HTTPS server listens (default :8443, every interface)
  --tls-cert FILE          serve this certificate (with --tls-key), reloaded when it changes;
  --tls-key FILE           without them, a CA of its own is kept in the Secret below
  --namespace NS           the injector's namespace (default $SLUICE_NAMESPACE, else sluice-system)
  --service NAME           its Service, named in the certificate (default sluice-injector)
  --secret NAME            the Secret holding its CA and certificate (default sluice-injector-tls)
  --webhook NAME           the MutatingWebhookConfiguration whose caBundle it fills (default sluice-injector)
  --sidecar-image IMAGE    image injected when a pod names none (default $SLUICE_IMAGE, else sluice:VERSION)

environment:
  SLUICE_CONFIG          policy file for serve (--config wins)
${OVERRIDES}
  SLUICE_LOG_LEVEL       trace, debug, info (default), warn, error, fatal or silent
  SLUICE_STOP_DELAY      serve: on SIGTERM, keep answering this long (e.g. 25s) before draining

signals (serve):
  SIGHUP                 read the policy file and the server.tls files again (they are
                         also watched for changes)
  SIGTERM, SIGINT        stop taking calls, finish the ones under way, exit 0
`;

export const SERVE_USAGE = `usage: sluice serve [--config FILE] [--pretty]

Runs the sidecar: sluice.v1 and Envoy's rate limit service over gRPC on server.listen, and
/metrics, /healthz and /readyz over HTTP on server.admin. Logs are JSON lines on stdout; when
stderr is a terminal, one more line there says where it listens and what to try.

options:
  -c, --config FILE      the policy file (default $SLUICE_CONFIG, else the package's
                         examples/quickstart.yaml)
  --pretty               logs for a person to read instead of JSON lines
  -h, --help             print this

environment:
  SLUICE_CONFIG          the policy file, when --config is not given
${OVERRIDES}
  SLUICE_LOG_LEVEL       trace, debug, info (default), warn, error, fatal or silent
  SLUICE_STOP_DELAY      on SIGTERM, keep answering this long (e.g. 25s) before draining

signals:
  SIGHUP                 read the policy file and the server.tls files again (they are
                         also watched for changes)
  SIGTERM, SIGINT        stop taking calls, finish the ones under way, exit 0

exit status: 0 after a signal's drain, 1 when the policy is invalid or an address cannot be
listened on, 2 for a wrong command line or environment.
`;

export const CHECK_USAGE = `usage: sluice check FILE

Validates a policy file as serve would load it, with the environment's overrides applied, and
prints every problem with its place (path, line and column) or the variable that gave the value.

options:
  -c, --config FILE      the policy file, when FILE is not given
  -h, --help             print this

environment:
${OVERRIDES}
  SLUICE_LOG_LEVEL       checked as serve checks it
  SLUICE_STOP_DELAY      checked as serve checks it

exit status: 0 when the policy is valid, 1 when it is not (or SLUICE_LOG_LEVEL or
SLUICE_STOP_DELAY is not), 2 for a wrong command line.
`;

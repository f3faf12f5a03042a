package v1alpha1

// Condition types and reasons. Every reason a controller sets is declared here, so this file
// is the reference for what a condition can say.

// AgentSandbox conditions.
const (
	// SandboxReady is True when the pool holds spec.replicas Ready warm pods.
	SandboxReady = "Ready"
	// SandboxDegraded is True when something keeps the pool from its target; the reason
	// says what and the message names the values and the fix.
	SandboxDegraded = "Degraded"

	// ReasonPoolReady: the pool is at its target.
	ReasonPoolReady = "PoolReady"
	// ReasonPoolFilling: warm pods are being created or are booting.
	ReasonPoolFilling = "PoolFilling"
	// ReasonAsExpected: nothing keeps the pool from its target.
	ReasonAsExpected = "AsExpected"
	// ReasonRuntimeClassNotFound: the RuntimeClass the pods would use does not exist.
	ReasonRuntimeClassNotFound = "RuntimeClassNotFound"
	// ReasonNoCompatibleNodes: no Windows node has a build that can run spec.windows.imageBuild
	// with spec.isolation.
	ReasonNoCompatibleNodes = "NoCompatibleNodes"
	// ReasonPodCreateForbidden: the API server refused to create a pod (a ResourceQuota, an
	// admission policy); the message carries the API's words.
	ReasonPodCreateForbidden = "PodCreateForbidden"
	// ReasonPodsNotReady: warm pods did not become Ready within the deadline and are being
	// replaced, with backoff.
	ReasonPodsNotReady = "PodsNotReady"
	// ReasonQuotaLimited: the namespace's AgentQuota (warmSandboxes, memory or cpu) holds the
	// pool below spec.replicas; the message names the quota and the arithmetic.
	ReasonQuotaLimited = "QuotaLimited"
)

// AgentSession conditions.
const (
	// SessionReadyCondition is True while the session's sandbox is bound and Ready.
	SessionReadyCondition = "Ready"

	// ReasonBound: the session holds a Ready sandbox.
	ReasonBound = "Bound"
	// ReasonPodStarting: the session holds a pod that is still booting (a cold start).
	ReasonPodStarting = "PodStarting"
	// ReasonSandboxNotFound: the AgentSandbox named in spec.sandboxName does not exist in the
	// namespace (yet); the session binds when it appears.
	ReasonSandboxNotFound = "SandboxNotFound"
	// ReasonWaitingForWarmSandbox: startPolicy RequireWarm and no warm sandbox is Ready.
	ReasonWaitingForWarmSandbox = "WaitingForWarmSandbox"
	// ReasonPodCreateFailed: a cold pod could not be created; retried with backoff.
	ReasonPodCreateFailed = "PodCreateFailed"

	// End reasons (status.endReason, and the Ready condition's reason once finished).

	// ReasonMaxLifetime: the session reached its hard deadline.
	ReasonMaxLifetime = "MaxLifetime"
	// ReasonIdleTimeout: no heartbeat within the idle timeout.
	ReasonIdleTimeout = "IdleTimeout"
	// ReasonPodFailed: the sandbox pod failed or was evicted.
	ReasonPodFailed = "PodFailed"
	// ReasonPodDeleted: the sandbox pod was deleted by someone else.
	ReasonPodDeleted = "PodDeleted"
	// ReasonNodeLost: the node the sandbox ran on is gone.
	ReasonNodeLost = "NodeLost"
	// ReasonSandboxDeleted: the session's AgentSandbox was deleted.
	ReasonSandboxDeleted = "SandboxDeleted"
)

// AgentQuota conditions, and the session condition a quota sets.
const (
	// QuotaActive is True when this AgentQuota is the one enforced for its namespace.
	QuotaActive = "Active"
	// ReasonEnforced: the quota is enforced.
	ReasonEnforced = "Enforced"
	// ReasonConflict: the namespace has more than one AgentQuota; none but the oldest is
	// enforced.
	ReasonConflict = "Conflict"

	// QuotaReserved is the session condition that says the quota admitted it.
	QuotaReserved = "QuotaReserved"
	// ReasonQuotaReserved: admitted.
	ReasonQuotaReserved = "QuotaReserved"
	// ReasonWaitingForQuota: does not fit now; admitted in FIFO order when it does.
	ReasonWaitingForQuota = "WaitingForQuota"
	// ReasonExceedsQuota: can never fit: one sandbox alone exceeds a limit.
	ReasonExceedsQuota = "ExceedsQuota"
	// ReasonResourceQuotaExceeded: a native ResourceQuota forbids the pod; retried when it
	// changes or capacity frees.
	ReasonResourceQuotaExceeded = "ResourceQuotaExceeded"
)

// The end reason of a session refused by a full quota queue.
const (
	// ReasonQueueFull (end reason, phase Failed): the session would have waited for its
	// namespace's quota while maxQueued sessions already wait (AgentQuota spec.maxQueued,
	// or the manager's --max-queued-sessions for the default quota). Retry later, or raise
	// the limit.
	ReasonQueueFull = "QueueFull"
)

// Reasons of the tenant boundary: what the manager reports when a class or session cannot
// be served as its promise to the platform team requires.
const (
	// ReasonEgressPolicyNotReady (AgentSandbox Degraded, AgentSession Ready=False): the
	// class's NetworkPolicy for spec.egress does not exist (yet) or could not be written.
	// Egress fails closed: no pod of the class is created or bound until it exists.
	ReasonEgressPolicyNotReady = "EgressPolicyNotReady"
	// ReasonRuntimeClassMismatch (AgentSandbox Degraded): the RuntimeClass's handler does
	// not give the class's spec.isolation (a Hyper-V handler for Process, whose VM the quota
	// would not count, or a process handler for HyperV, which would run without a VM).
	ReasonRuntimeClassMismatch = "RuntimeClassMismatch"
	// ReasonPodNotReady (AgentSession Ready=False): the session's pod was Ready and is not
	// any more (a failing readiness probe, a node under pressure); the session keeps it.
	ReasonPodNotReady = "PodNotReady"
	// ReasonInvalidSpec (AgentSandbox Degraded; AgentSession end reason, or Ready=False
	// while its class has one): a stored field the manager cannot use, e.g. a duration
	// stored before the CRD bounded it. The message names the field and the value; fix or
	// recreate the object.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonSessionDeleted (end reason): the session was deleted while it held a sandbox
	// and something (a finalizer) keeps the object; the sandbox is destroyed at once.
	ReasonSessionDeleted = "SessionDeleted"
)

// The credentials condition of a session that names Secrets in spec.credentials. The
// manager never reads the Secrets: it mirrors what the client says in the
// agents.hyperpool.io/credentials-delivered annotation (CredentialsDeliveredAnnotation).
const (
	// CredentialsDelivered is the session condition that says whether the client delivered
	// spec.credentials into the sandbox. Absent when the session names no credentials, and
	// until the session is bound.
	CredentialsDelivered = "CredentialsDelivered"
	// ReasonCredentialsDelivered (True): the client set the annotation after writing the
	// named Secrets' keys into the sandbox; the message names the Secrets and the time.
	ReasonCredentialsDelivered = "Delivered"
	// ReasonCredentialsPending (False): the session is bound and names Secrets, and no
	// client has said it delivered them yet.
	ReasonCredentialsPending = "Pending"
)

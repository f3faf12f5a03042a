//go:build windows

package nodeagent

import (
	"context"
	"net"

	"github.com/Microsoft/go-winio"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DialCRI connects to the container runtime's CRI over its named pipe (DefaultCRIEndpoint
// for containerd). The connection is lazy: errors show up on the first call. Close the
// returned connection when done.
func DialCRI(endpoint string) (runtimeapi.RuntimeServiceClient, *grpc.ClientConn, error) {
	pipe, err := PipePath(endpoint)
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient("passthrough:///"+pipe,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return winio.DialPipeContext(ctx, pipe)
		}),
		// The sandbox list of a busy node is larger than gRPC's 4 MiB default (the kubelet uses 16 MiB).
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)),
	)
	if err != nil {
		return nil, nil, err
	}
	return runtimeapi.NewRuntimeServiceClient(conn), conn, nil
}

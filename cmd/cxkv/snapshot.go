package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/spf13/cobra"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "back up a member's state, check a backup, restore one into a new cluster",
		Long: `A backup is one member's whole state at one applied index, in the
checksummed format members send each other: save copies it from a running
cluster, status checks a file, restore makes the data dir of a member of a
NEW cluster from it (run it once per member, with the same --cluster).`,
	}
	cmd.AddCommand(newSnapshotSaveCmd(g), newSnapshotStatusCmd(g), newSnapshotRestoreCmd(g))
	return cmd
}

// backupView is the table and JSON form of a backup.
type backupView struct {
	File     string `json:"file"`
	Index    uint64 `json:"index"`
	Keys     uint64 `json:"keys"`
	Size     int64  `json:"size"`
	Checksum string `json:"checksum"`
	Member   uint64 `json:"member,omitempty"` // save: the member copied; restore: the member created
	DataDir  string `json:"data_dir,omitempty"`
}

func viewOf(file string, info raftnode.BackupInfo) backupView {
	return backupView{File: file, Index: info.Applied, Keys: info.Records, Size: info.Bytes, Checksum: fmt.Sprintf("crc32c:%08x", info.Checksum)}
}

func (g *globals) printBackup(w io.Writer, v backupView) error {
	if g.json() {
		return printJSON(w, v)
	}
	t := newTable(w)
	fmt.Fprintf(t, "file\t%s\n", v.File)
	fmt.Fprintf(t, "index\t%d\n", v.Index)
	fmt.Fprintf(t, "keys\t%d\n", v.Keys)
	fmt.Fprintf(t, "size\t%d bytes\n", v.Size)
	fmt.Fprintf(t, "checksum\t%s\n", v.Checksum)
	if v.Member != 0 {
		fmt.Fprintf(t, "member\t%d\n", v.Member)
	}
	if v.DataDir != "" {
		fmt.Fprintf(t, "data dir\t%s\n", v.DataDir)
	}
	return t.Flush()
}

func newSnapshotSaveCmd(g *globals) *cobra.Command {
	var serializable bool
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "copy one member's state, at one index, into FILE",
		Long: `Stream a consistent copy of one member's state (the first endpoint that
answers) into FILE and print its index, keys, size and checksum. Unless
--serializable, the copy holds every write acknowledged before the command
started. There is no overall deadline: --timeout bounds the wait for each
piece, so a large state takes as long as it needs. FILE must not exist;
the copy is written beside it and renamed into place once complete,
synced and checked, so FILE is never a partial backup.`,
		Args: cobra.ExactArgs(1),
		RunE: g.clientCmd(true, func(ctx context.Context, cmd *cobra.Command, c *client.Client, args []string) error {
			file := args[0]
			if _, err := os.Stat(file); err == nil {
				return usageError{fmt.Errorf("%s exists; name a new file (a backup never overwrites one)", file)}
			}
			var opts []client.ReadOption
			if serializable {
				opts = append(opts, client.Serializable())
			}
			tmp, err := os.CreateTemp(filepath.Dir(file), filepath.Base(file)+".part-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name()) // once renamed, a no-op
			from, err := c.Backup(ctx, tmp, opts...)
			if err == nil {
				err = tmp.Sync()
			}
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			info, err := inspectFile(tmp.Name())
			if err != nil {
				return fmt.Errorf("backup from %s is damaged: %w", from.Endpoint, err)
			}
			if info.Applied != from.Index {
				return fmt.Errorf("backup from %s: it holds index %d, the member named %d", from.Endpoint, info.Applied, from.Index)
			}
			if err := os.Rename(tmp.Name(), file); err != nil {
				return err
			}
			if err := syncDir(filepath.Dir(file)); err != nil {
				return err
			}
			v := viewOf(file, info)
			v.Member = from.MemberID
			return g.printBackup(cmd.OutOrStdout(), v)
		}),
	}
	cmd.Flags().BoolVar(&serializable, "serializable", false, "copy the member's state as it is, without first catching up with the leader")
	return cmd
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func inspectFile(file string) (raftnode.BackupInfo, error) {
	f, err := os.Open(file)
	if err != nil {
		return raftnode.BackupInfo{}, err
	}
	defer f.Close()
	return raftnode.InspectBackup(f)
}

func newSnapshotStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status FILE",
		Short: "check a backup and print its index, keys, size and checksum",
		Long: `Read the whole backup FILE, check it as a restore would (format,
framing, key order, checksum) and print its index, number of keys, size and
checksum. A damaged file is reported with what is wrong and exit code 1.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.output != "table" && g.output != "json" {
				return usageError{fmt.Errorf("-o %q: want table or json", g.output)}
			}
			info, err := inspectFile(args[0])
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			return g.printBackup(cmd.OutOrStdout(), viewOf(args[0], info))
		},
	}
}

func newSnapshotRestoreCmd(g *globals) *cobra.Command {
	var (
		dataDir, spec, token string
		id                   uint64
	)
	cmd := &cobra.Command{
		Use:   "restore FILE --data-dir DIR --id N --cluster ID=HOST:PORT,...",
		Short: "create the data dir of a member of a new cluster from a backup",
		Long: `Create DIR, the data dir of member --id of a new cluster whose members
--cluster names (peer addresses, as cxkv server takes them), holding the
backup's state. Run it for every member with the same FILE and --cluster,
then start each with cxkv server and the same --id, --cluster and
--data-dir. The new cluster's log starts after the backup's index, so
indexes and fencing tokens keep growing. Refused, with nothing written:
a DIR that exists and is not empty, a backup that is truncated or
damaged.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.output != "table" && g.output != "json" {
				return usageError{fmt.Errorf("-o %q: want table or json", g.output)}
			}
			if dataDir == "" {
				return usageError{errors.New("--data-dir is required")}
			}
			if id == 0 {
				return usageError{errors.New("--id must be positive")}
			}
			if spec == "" {
				return usageError{errors.New("--cluster is required: the new cluster's members")}
			}
			peers, err := parsePeers(spec)
			if err != nil {
				return usageError{err}
			}
			if _, ok := peers[id]; !ok {
				return usageError{fmt.Errorf("--cluster %q does not name this member (--id %d)", spec, id)}
			}
			file := args[0]
			open := func() (io.ReadCloser, error) { return os.Open(file) }
			info, err := raftnode.RestoreBackup(raftnode.RestoreConfig{DataDir: dataDir, ID: id, Peers: peers, ClusterToken: token}, open)
			if err != nil {
				return err
			}
			v := viewOf(file, info)
			v.Member, v.DataDir = id, dataDir
			return g.printBackup(cmd.OutOrStdout(), v)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "", "the new member's data dir (must not exist, or be empty)")
	f.Uint64Var(&id, "id", 0, "the new member's id")
	f.StringVar(&spec, "cluster", "", "the new cluster's members as id=host:port,... (peer addresses)")
	f.StringVar(&token, "cluster-token", "", "the new cluster's token, as cxkv server --cluster-token takes it (the same for every member)")
	return cmd
}

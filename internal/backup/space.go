package backup

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// sizeQuery measures a database on disk: an upper bound of its
// custom-format dump, which holds no index and is compressed.
const sizeQuery = `SELECT pg_database_size(current_database())`

// checkRoom refuses the backup when the filesystem of Dir has less free
// space than the dumps and copies still to make may need.
func (o Options) checkRoom(ctx context.Context, jobs []dumpJob, copies []configCopy) error {
	var need uint64
	var parts []string
	for _, j := range jobs {
		if j.done != nil {
			continue
		}
		size, err := databaseSize(ctx, j)
		if err != nil {
			return err
		}
		need += size
		parts = append(parts, fmt.Sprintf("%s database %s", j.label, bytesText(size)))
	}
	var configs uint64
	for _, c := range copies {
		if !c.reused {
			configs += uint64(c.size)
		}
	}
	if configs > 0 {
		need += configs
		parts = append(parts, "config files "+bytesText(configs))
	}
	if need == 0 {
		return nil
	}
	free, err := o.FreeSpace(o.Dir)
	if err != nil {
		return fmt.Errorf("measuring the free space of backup.dir %s: %w", o.Dir, err)
	}
	if free >= need {
		return nil
	}
	return fmt.Errorf("%w: backup.dir %s has %s free (%d bytes) but the backup may need %s (%d bytes: %s; "+
		"a database's size on disk bounds its compressed dump): set backup.dir to a filesystem with more room, "+
		"or free space there", ErrNoRoom, o.Dir, bytesText(free), free, bytesText(need), need, strings.Join(parts, ", "))
}

// databaseSize connects as masflow does (pgx, the same connection string).
func databaseSize(ctx context.Context, j dumpJob) (uint64, error) {
	c, err := pgx.Connect(ctx, j.connString.Reveal())
	if err != nil {
		return 0, fmt.Errorf("measuring the %s database: %s", j.label, j.conn.scrub(err.Error()))
	}
	defer c.Close(ctx)
	var size int64
	if err := c.QueryRow(ctx, sizeQuery).Scan(&size); err != nil {
		return 0, fmt.Errorf("measuring the %s database: %s", j.label, j.conn.scrub(err.Error()))
	}
	return uint64(size), nil
}

// bytesText renders a size for people: 1.5 GiB.
func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

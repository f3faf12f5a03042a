package autoscale

import (
	"fmt"
	"time"
	// The manager's image may have no zone database; the names a schedule uses must
	// resolve anyway.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"
)

// cronParser reads the standard five-field cron format (minute hour day-of-month month
// day-of-week) and the @daily-style descriptors. A time zone goes in its own field, not
// in a TZ= prefix, and @every is refused: a window needs wall-clock times.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Window is a recurring window of wall-clock time in a time zone: it opens at each
// activation of Start and closes at the next activation of End, as KEDA's cron scaler
// reads its start and end. Daylight saving time is the cron library's: a window that
// opens at 08:00 opens at 08:00 local time on both sides of a change.
type Window struct {
	start, end *cron.SpecSchedule
	loc        *time.Location
}

// ParseWindow compiles a window. start and end are cron expressions, timeZone an IANA
// name (empty: UTC). The errors name the value and what is expected.
func ParseWindow(start, end, timeZone string) (*Window, error) {
	loc := time.UTC
	if timeZone != "" {
		var err error
		if loc, err = time.LoadLocation(timeZone); err != nil {
			return nil, fmt.Errorf("timeZone %q is not a time zone name: use an IANA name such as Europe/Paris or America/New_York", timeZone)
		}
	}
	w := &Window{loc: loc}
	for _, f := range []struct {
		name, spec string
		into       **cron.SpecSchedule
	}{{"start", start, &w.start}, {"end", end, &w.end}} {
		s, err := cronParser.Parse(f.spec)
		if err != nil {
			return nil, fmt.Errorf("%s %q is not a cron expression (minute hour day-of-month month day-of-week, e.g. \"0 8 * * 1-5\"): %w", f.name, f.spec, err)
		}
		spec, ok := s.(*cron.SpecSchedule)
		if !ok {
			return nil, fmt.Errorf("%s %q: @every is not a time of day; use a cron expression such as \"0 8 * * 1-5\"", f.name, f.spec)
		}
		*f.into = spec
	}
	return w, nil
}

// Active says whether t is inside the window: the next change after t is a close. At the
// very minute of an opening the window is open; at the minute of a closing, closed.
func (w *Window) Active(t time.Time) bool {
	local := t.In(w.loc)
	nextStart, nextEnd := w.start.Next(local), w.end.Next(local)
	return !nextEnd.IsZero() && (nextStart.IsZero() || nextEnd.Before(nextStart))
}

// NextChange is the next opening or closing after t (zero if the window never changes).
func (w *Window) NextChange(t time.Time) time.Time {
	local := t.In(w.loc)
	nextStart, nextEnd := w.start.Next(local), w.end.Next(local)
	switch {
	case nextStart.IsZero():
		return nextEnd
	case nextEnd.IsZero() || nextStart.Before(nextEnd):
		return nextStart
	default:
		return nextEnd
	}
}

//go:build !windows

package bench

import (
	"fmt"
	"image/color"
	"io"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// dayColors: fixed-peak, fixed-average, autoscaling.
var dayColors = []color.RGBA{{0x1f, 0x77, 0xb4, 255}, {0xd6, 0x27, 0x28, 255}, {0x2c, 0xa0, 0x2c, 255}}

// WritePlot draws the day in three panels sharing the hour axis, as a PNG: the demand
// (sessions per hour), each pool's warm sandboxes, and each pool's cold starts per hour.
func (r *DayReport) WritePlot(w io.Writer) error {
	demand := plot.New()
	demand.Title.Text = fmt.Sprintf("A simulated day: %d sessions, replayed in %s", r.Sessions, r.Options.Duration)
	demand.Y.Label.Text = "sessions / hour"
	if err := addLine(demand, "demand", hourly(r.ArrivalsPH), color.RGBA{A: 255}); err != nil {
		return err
	}

	warm := plot.New()
	warm.Y.Label.Text = "warm sandboxes"
	cold := plot.New()
	cold.Y.Label.Text = "cold starts / hour"
	cold.X.Label.Text = "hour of the day"
	for i, x := range r.Policies {
		pts := make(plotter.XYs, len(x.Warmth))
		for j, n := range x.Warmth {
			pts[j] = plotter.XY{X: float64(j) / 60, Y: float64(n)}
		}
		label := fmt.Sprintf("%s (%s): %.1f%% warm, %.0f GB-h idle", x.Policy, sizeOf(x), 100*x.WarmHitRatio, x.IdleGBHours)
		if err := addLine(warm, label, pts, dayColors[i%len(dayColors)]); err != nil {
			return err
		}
		if err := addLine(cold, x.Policy, hourly(x.ColdPerHour), dayColors[i%len(dayColors)]); err != nil {
			return err
		}
	}
	plots := [][]*plot.Plot{{demand}, {warm}, {cold}}
	for _, row := range plots {
		row[0].X.Min, row[0].X.Max = 0, 24
		row[0].Y.Min = 0
		row[0].Legend.Top = true
		row[0].Add(plotter.NewGrid())
	}
	img := vgimg.New(vg.Points(900), vg.Points(900))
	tiles := draw.Tiles{Rows: 3, Cols: 1, PadY: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2,
		PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	canvases := plot.Align(plots, tiles, draw.New(img))
	for j := range plots {
		plots[j][0].Draw(canvases[j][0])
	}
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}

// hourly turns per-hour counts into a step line over the day.
func hourly(counts []int) plotter.XYs {
	pts := make(plotter.XYs, 0, 2*len(counts))
	for h, n := range counts {
		pts = append(pts, plotter.XY{X: float64(h), Y: float64(n)}, plotter.XY{X: float64(h + 1), Y: float64(n)})
	}
	return pts
}

func addLine(p *plot.Plot, label string, pts plotter.XYs, c color.RGBA) error {
	l, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	l.Color = c
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(label, l)
	return nil
}

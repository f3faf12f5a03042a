//go:build !windows

package bench

import (
	"fmt"
	"image/color"
	"io"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// targetColors: one per autoscaler target, in the options' order.
var targetColors = []color.RGBA{{0xd6, 0x27, 0x28, 255}, {0xff, 0x7f, 0x0e, 255}, {0x2c, 0xa0, 0x2c, 255}, {0x94, 0x67, 0xbd, 255}}

// fixedColor is the fixed pools' curve.
var fixedColor = color.RGBA{0x1f, 0x77, 0xb4, 255}

// WritePlot draws the run's cost curve as a PNG: idle VM GB-hours against the warm-hit
// ratio, the ladder of fixed pools as one line per seed and each autoscaler target as one
// point per seed.
func (r *DayRun) WritePlot(w io.Writer) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Cost of warm hits: %d simulated days, each replayed in %s", len(r.Seeds), r.Options.Duration)
	p.X.Label.Text = "warm-hit ratio (%)"
	p.Y.Label.Text = "idle VM GB-hours per day"
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true
	for i, d := range r.Seeds {
		fixed := slices.DeleteFunc(slices.Clone(d.Pools), DayPool.Autoscaled)
		slices.SortFunc(fixed, func(a, b DayPool) int { return int(a.Replicas - b.Replicas) })
		pts := make(plotter.XYs, len(fixed))
		for j, x := range fixed {
			pts[j] = plotter.XY{X: 100 * x.WarmHitRatio, Y: x.IdleGBHours}
		}
		if len(pts) == 0 {
			continue
		}
		l, s, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		l.Color, s.Color = fixedColor, fixedColor
		l.Width = vg.Points(1)
		s.Shape, s.Radius = draw.CircleGlyph{}, vg.Points(2)
		p.Add(l, s)
		if i == 0 {
			p.Legend.Add(fmt.Sprintf("fixed pools %d..%d (one line per seed)", fixed[0].Replicas, fixed[len(fixed)-1].Replicas), l, s)
		}
	}
	for i, t := range r.Options.Targets {
		var pts plotter.XYs
		for _, d := range r.Seeds {
			if a, ok := d.pool(autoPoolName(t)); ok {
				pts = append(pts, plotter.XY{X: 100 * a.WarmHitRatio, Y: a.IdleGBHours})
			}
		}
		if len(pts) == 0 {
			continue
		}
		s, err := plotter.NewScatter(pts)
		if err != nil {
			return err
		}
		s.Color = targetColors[i%len(targetColors)]
		s.Shape, s.Radius = draw.PyramidGlyph{}, vg.Points(4)
		p.Add(s)
		p.Legend.Add(fmt.Sprintf("autoscaler, warmHitTarget %v (one point per seed)", t), s)
	}
	p.Y.Min = 0
	p.X.Max += 0.3 // a pool at 100 % is not drawn on the border
	img := vgimg.New(vg.Points(800), vg.Points(560))
	p.Draw(draw.New(img))
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}

# bench/plot.gp: req/s and p99 against connections, from bench/run's results.
#   gnuplot -e "results='FILE.csv'" -e "output='doc/benchmarks.png'" bench/plot.gp
set datafile separator ","
set terminal pngcairo size 1200,500 font "sans,10"
set output output
set multiplot layout 1,2 title "tallyd, mtpolicyd and a bare epoll server (1,000 keys)"
set logscale x 2
set xlabel "connections"
set key top left
set grid
set ylabel "requests per second"
set logscale y 10
plot for [s in "bare tallyd mtpolicyd"] results \
    using (strcol(1) eq s && $2 == 1000 ? $3 : 1/0):6 with linespoints title s
set ylabel "p99 latency (ms)"
plot for [s in "bare tallyd mtpolicyd"] results \
    using (strcol(1) eq s && $2 == 1000 ? $3 : 1/0):($8/1000) with linespoints title s
unset multiplot

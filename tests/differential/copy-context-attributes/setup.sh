mkdir -p bin sub/deep && echo s > script && echo b > bin/b && chmod 0604 bin/b && echo d > sub/deep/d
chmod 0711 sub && touch -d '2021-05-06 07:08:09' sub/deep/d sub/deep script bin/b

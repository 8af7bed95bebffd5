mkdir -p src/d && echo f > src/d/f && ln -s f src/d/l && ln src/d/f src/d/h && chmod 0640 src/d/f
touch -d '2020-01-02 03:04:05' src/d/f src/d src
tar --numeric-owner --owner=123 --group=456 -cf owned.tar -C src .
tar --numeric-owner --owner=7 --group=8 -czf owned.tar.gz -C src .
rm -rf src

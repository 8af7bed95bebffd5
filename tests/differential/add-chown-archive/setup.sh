mkdir -p s/css && echo '<html>' > s/index.html && echo 'a{}' > s/css/a.css && ln -s index.html s/default.html
tar --numeric-owner --owner=9 --group=9 -czf site.tar.gz -C s . && rm -rf s

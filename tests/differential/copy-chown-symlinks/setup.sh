mkdir -p tree/sub && echo f > tree/f && ln -s f tree/l && ln -s ../f tree/sub/l2 && ln -s tree/f link
touch -h -d '2020-01-02 03:04:05' tree/l link

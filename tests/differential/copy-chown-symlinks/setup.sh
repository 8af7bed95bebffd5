mkdir -p tree/sub && echo f > tree/f && ln -s f tree/l && ln -s ../f tree/sub/l2 && ln -s tree/f link

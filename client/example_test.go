package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/client"
)

// Connect through the control plane's etcd: the client watches the
// topology and always talks to the current leader.
func ExampleNew() {
	c, err := client.New(client.Options{
		Etcd:  []string{"127.0.0.1:2379"},
		Redis: &redis.Options{PoolSize: 32, ReadTimeout: 2 * time.Second},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx := context.Background()
	if err := c.Set(ctx, "greeting", "hello", 0).Err(); err != nil {
		log.Fatal(err)
	}
	v, err := c.Get(ctx, "greeting").Result()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v)
}

// Without etcd, list the nodes: the client asks them ROLE to find the
// leader, and again when one refuses a command.
func ExampleNew_addrs() {
	c, err := client.New(client.Options{Addrs: []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	id, addr, epoch := c.Leader()
	fmt.Println(id, addr, epoch)
}

// An INCR whose outcome a failover made unknown is not retried: the error
// says so, and the caller decides.
func ExampleClassify() {
	c, err := client.New(client.Options{Etcd: []string{"127.0.0.1:2379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	n, err := c.Incr(context.Background(), "visits").Result()
	switch {
	case err == nil:
		fmt.Println("visits:", n)
	case client.Classify(err) == client.RetryIdempotent:
		fmt.Println("the increment may or may not have happened:", err)
	default:
		fmt.Println("not applied:", err)
	}
}

// Pipelines work as with any go-redis client; a pipeline is retried from
// its first refused command on, if all of those may be retried.
func ExampleClient_Pipelined() {
	c, err := client.New(client.Options{Etcd: []string{"127.0.0.1:2379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	var get *redis.StringCmd
	_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "a", "1", 0)
		p.Set(ctx, "b", "2", time.Hour)
		get = p.Get(ctx, "a")
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(get.Val())
}

// A *Client is a redis.UniversalClient, for code written against go-redis.
func ExampleClient_universal() {
	c, err := client.New(client.Options{Etcd: []string{"127.0.0.1:2379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	var u redis.UniversalClient = c
	_ = u.Ping(context.Background()).Err()
}
